//! Every management call round-trips through the typed client: sites, keys, audit, usage,
//! whoami, leak reports, health.

use crate::servers::spawn_latchkey;
use chrono::{Duration, Timelike, Utc};
use latchkey_client::{
    AuditFilter, Credits, KeyFilter, KeyStatus, KeyUpdate, NewKey, PageRequest, Permission, RateLimit,
};
use serde_json::{json, Map};

#[tokio::test]
async fn sites_are_created_read_listed_renamed_and_deleted() {
    let latchkey = spawn_latchkey().await;
    let sites = latchkey.master.sites();

    let blog = sites.create("Blog").await.unwrap();
    assert_eq!(blog.name, "Blog");
    assert_eq!(sites.get(&blog.id).await.unwrap().name, "Blog");
    let listed = sites.list(&PageRequest::default()).await.unwrap();
    assert!(listed.data.iter().any(|site| site.id == blog.id), "{listed:?}");

    assert_eq!(sites.rename(&blog.id, "Journal").await.unwrap().name, "Journal");
    sites.delete(&blog.id).await.unwrap();
    let gone = sites.get(&blog.id).await.unwrap_err();
    assert_eq!((gone.status().unwrap().as_u16(), gone.code()), (404, Some("not_found")), "{gone}");
}

#[tokio::test]
async fn a_key_is_created_with_its_settings_and_read_back_the_same() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Forja").await;
    // Whole seconds: Latchkey keeps expiry to the second.
    let expires_at = (Utc::now() + Duration::days(30)).with_nanosecond(0).unwrap();
    let metadata = Map::from_iter([("plan".to_owned(), json!("pro"))]);
    let new = NewKey::new("CI deploy", Permission::Write)
        .for_site(&site)
        .with_scopes(["flows:execute"])
        .with_description("deploys from CI")
        .expiring_at(expires_at)
        .owned_by("customer-42")
        .with_metadata(metadata)
        .with_ratelimit(100, 60)
        .with_credits(Credits { remaining: 1000, refill: None });

    let created = latchkey.master.keys().create(&new).await.unwrap();
    assert!(created.key.expose().starts_with(&created.record.prefix), "the prefix is the key's start");

    let read = latchkey.master.keys().get(&created.record.id).await.unwrap();
    assert_eq!(read.name, "CI deploy");
    assert_eq!(read.permission, Permission::Write);
    assert_eq!(read.status, KeyStatus::Active);
    assert_eq!(read.site_id.as_ref(), Some(&site));
    assert_eq!(read.scopes, ["flows:execute"]);
    assert_eq!(read.description.as_deref(), Some("deploys from CI"));
    assert_eq!(read.expires_at, Some(expires_at));
    assert_eq!(read.owner_id.as_deref(), Some("customer-42"));
    assert_eq!(read.metadata, Some(json!({ "plan": "pro" })));
    assert_eq!(read.ratelimit, Some(RateLimit { limit: 100, window_seconds: 60 }));
    assert_eq!(read.credits.map(|credits| credits.remaining), Some(1000));
}

#[tokio::test]
async fn listings_filter_by_site_and_owner_and_page_with_a_cursor() {
    let latchkey = spawn_latchkey().await;
    let (blog, shop) = (latchkey.site("Blog").await, latchkey.site("Shop").await);
    for name in ["one", "two", "three"] {
        latchkey.create(NewKey::new(name, Permission::Read).for_site(&blog).owned_by("customer-7")).await;
    }
    latchkey.key(Permission::Read, &shop).await;
    let keys = latchkey.master.keys();

    let first =
        keys.list(&KeyFilter { site: Some(blog.clone()), limit: Some(2), ..KeyFilter::default() }).await.unwrap();
    let names: Vec<_> = first.data.iter().map(|key| key.name.as_str()).collect();
    assert_eq!(names, ["three", "two"], "newest first");
    let cursor = first.next_cursor.expect("a second page");
    let second =
        keys.list(&KeyFilter { site: Some(blog), cursor: Some(cursor), ..KeyFilter::default() }).await.unwrap();
    assert_eq!(second.data.iter().map(|key| key.name.as_str()).collect::<Vec<_>>(), ["one"]);
    assert_eq!(second.next_cursor, None);

    let owned = keys.list(&KeyFilter { owner_id: Some("customer-7".into()), ..KeyFilter::default() }).await.unwrap();
    assert_eq!(owned.data.len(), 3);
}

#[tokio::test]
async fn an_update_changes_what_it_names_and_clears_what_it_sends_as_null() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let created =
        latchkey.create(NewKey::new("old name", Permission::Read).for_site(&site).with_description("x")).await;

    let update = KeyUpdate {
        name: Some("new name".into()),
        description: Some(None),
        permission: Some(Permission::Write),
        ..KeyUpdate::default()
    };
    let updated = latchkey.master.keys().update(&created.record.id, &update).await.unwrap();
    assert_eq!(updated.name, "new name");
    assert_eq!(updated.description, None);
    assert_eq!(updated.permission, Permission::Write);
    assert_eq!(updated.scopes, created.record.scopes, "what the update does not name stays");
}

#[tokio::test]
async fn a_blocked_key_shows_as_blocked_until_it_is_unblocked() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let id = latchkey.key(Permission::Read, &site).await.record.id;

    assert_eq!(latchkey.master.keys().block(&id).await.unwrap().status, KeyStatus::Blocked);
    assert_eq!(latchkey.master.keys().get(&id).await.unwrap().status, KeyStatus::Blocked);
    assert_eq!(latchkey.master.keys().unblock(&id).await.unwrap().status, KeyStatus::Active);
}

#[tokio::test]
async fn a_rotated_key_has_a_new_value_and_both_keys_name_each_other() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let old = latchkey.key(Permission::Write, &site).await;

    let new = latchkey.master.keys().rotate(&old.record.id, 3600).await.unwrap();
    assert_ne!(new.key, old.key);
    assert_ne!(new.record.id, old.record.id);
    assert_eq!(new.record.permission, Permission::Write);
    assert_eq!(new.record.rotated_from.as_ref(), Some(&old.record.id));
    let old_now = latchkey.master.keys().get(&old.record.id).await.unwrap();
    assert_eq!(old_now.rotated_to.as_ref(), Some(&new.record.id));
    assert!(old_now.expires_at.is_some(), "the old key ends with its grace period");
}

#[tokio::test]
async fn a_deleted_key_is_not_found_afterwards() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let id = latchkey.key(Permission::Read, &site).await.record.id;

    latchkey.master.keys().delete(&id).await.unwrap();
    let error = latchkey.master.keys().get(&id).await.unwrap_err();
    assert_eq!(error.code(), Some("not_found"), "{error}");
}

#[tokio::test]
async fn usage_has_one_entry_per_day_asked_for() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let id = latchkey.key(Permission::Read, &site).await.record.id;

    let usage = latchkey.master.keys().usage(&id, 7).await.unwrap();
    assert_eq!(usage.key_id, id);
    assert_eq!(usage.days.len(), 7);
    assert_eq!(usage.days.last().map(|day| day.date), Some(Utc::now().date_naive()));
}

#[tokio::test]
async fn whoami_names_the_calling_key() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;

    let me = latchkey.anonymous.with_key(reader.key.clone()).whoami().await.unwrap();
    assert_eq!((me.id, me.permission), (reader.record.id, Permission::Read));
}

#[tokio::test]
async fn the_audit_trail_lists_what_was_done_to_a_key() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let id = latchkey.key(Permission::Read, &site).await.record.id;
    latchkey.master.keys().block(&id).await.unwrap();

    let filter = AuditFilter { key: Some(id.clone()), ..AuditFilter::default() };
    let events = latchkey.master.audit().list(&filter).await.unwrap();
    let actions: Vec<_> = events.data.iter().map(|event| event.action.as_str()).collect();
    assert_eq!(actions, ["key_blocked", "key_created"], "newest first");
    assert!(events.data.iter().all(|event| event.target_key_id.as_ref() == Some(&id)));

    let blocks = AuditFilter { action: Some("key_blocked".into()), ..AuditFilter::default() };
    assert_eq!(latchkey.master.audit().list(&blocks).await.unwrap().data.len(), 1);
}

#[tokio::test]
async fn a_leak_report_blocks_the_reported_key() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let leaked = latchkey.key(Permission::Read, &site).await;

    let receipt =
        latchkey.anonymous.report_leaks(std::slice::from_ref(&leaked.key), "https://paste.example/abc").await.unwrap();
    assert_eq!(receipt.received, 1);
    assert_eq!(latchkey.master.keys().get(&leaked.record.id).await.unwrap().status, KeyStatus::Blocked);
}

#[tokio::test]
async fn health_says_ok_without_a_key() {
    let latchkey = spawn_latchkey().await;
    let health = latchkey.anonymous.health().await.unwrap();
    assert_eq!((health.status.as_str(), health.warnings.len()), ("ok", 0));
}
