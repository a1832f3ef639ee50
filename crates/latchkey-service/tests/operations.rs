//! The service's operations against a real SQLite store, without HTTP: every operation
//! with the callers who may and the callers who may not, and the one verification entry
//! with every refusal it can give.

use latchkey_core::{
    Actor, Caller, Denied, KeyEdit, KeyName, KeyRecord, NewKey, Permission, Refusal, Requirement, Scopes, SecretKey,
    Site, SiteName, Status,
};
use latchkey_service::keys::KeyQuery;
use latchkey_service::{Check, ManualClock, PageRequest, Presented, Service, ServiceConfig, ServiceError, Verdict};
use std::sync::Arc;

struct World {
    service: Service,
    clock: Arc<ManualClock>,
    site: Site,
    other_site: Site,
    _dir: tempfile::TempDir,
}

fn caller_of(key: &KeyRecord) -> Caller {
    Caller {
        permission: key.permission,
        site_id: key.site_id.clone(),
        actor: Actor { key_id: Some(key.id.clone()), key_prefix: Some(key.prefix.as_str().into()), source_ip: None },
    }
}

fn new_key(name: &str, permission: Permission, site: Option<&Site>) -> NewKey {
    NewKey::plain(KeyName::parse(name).unwrap(), permission, site.map(|s| s.id.clone()))
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.db");
        let store = latchkey_sqlite::SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let service = Service::new(Arc::new(store), ServiceConfig::default(), clock.clone());
        service.ensure_bootstrap_key().await.unwrap().expect("an empty database");
        let system = Caller::system();
        let site = service.sites().create(&system, SiteName::parse("Blog").unwrap()).await.unwrap();
        let other_site = service.sites().create(&system, SiteName::parse("Shop").unwrap()).await.unwrap();
        World { service, clock, site, other_site, _dir: dir }
    }

    async fn key(&self, name: &str, permission: Permission, site: Option<&Site>) -> (KeyRecord, SecretKey) {
        self.service.keys().create(&Caller::system(), new_key(name, permission, site)).await.unwrap()
    }

    /// Master; Admin of the site; Admin of another site; Write and Read of the site.
    async fn callers(&self) -> Vec<(&'static str, Caller)> {
        vec![
            ("master", caller_of(&self.key("m", Permission::Master, None).await.0)),
            ("admin", caller_of(&self.key("a", Permission::Admin, Some(&self.site)).await.0)),
            ("other admin", caller_of(&self.key("o", Permission::Admin, Some(&self.other_site)).await.0)),
            ("write", caller_of(&self.key("w", Permission::Write, Some(&self.site)).await.0)),
            ("read", caller_of(&self.key("r", Permission::Read, Some(&self.site)).await.0)),
        ]
    }
}

/// What an operation on a Read key of the site gives each caller.
fn expected_for_site_key(who: &str) -> &'static str {
    match who {
        "master" | "admin" => "ok",
        "other admin" => "not found",
        _ => "denied",
    }
}

fn outcome<T>(result: &Result<T, ServiceError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ServiceError::NotFound(_)) => "not found",
        Err(ServiceError::Denied(_)) => "denied",
        Err(ServiceError::Invalid(_)) => "invalid",
        Err(ServiceError::Conflict(_)) => "conflict",
        Err(ServiceError::LastMaster) => "last master",
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn each_key_operation_is_allowed_to_master_and_the_sites_admin_only() {
    let world = World::new().await;
    for (who, caller) in world.callers().await {
        let keys = world.service.keys();
        let expected = expected_for_site_key(who);
        let target = world.key("target", Permission::Read, Some(&world.site)).await.0;
        let id = target.id.to_string();
        let rename = KeyEdit { name: Some(KeyName::parse("renamed").unwrap()), ..KeyEdit::default() };
        assert_eq!(outcome(&keys.get(&caller, &id).await), expected, "get by {who}");
        assert_eq!(outcome(&keys.edit(&caller, &id, &rename).await), expected, "edit by {who}");
        assert_eq!(outcome(&keys.usage(&caller, &id, 30).await), expected, "usage by {who}");
        assert_eq!(outcome(&keys.block(&caller, &id).await), expected, "block by {who}");
        assert_eq!(outcome(&keys.unblock(&caller, &id).await), expected, "unblock by {who}");
        assert_eq!(outcome(&keys.rotate(&caller, &id, 0).await), expected, "rotate by {who}");
        let doomed = world.key("doomed", Permission::Read, Some(&world.site)).await.0.id.to_string();
        assert_eq!(outcome(&keys.delete(&caller, &doomed).await), expected, "delete by {who}");
        let listed = keys.list(&caller, KeyQuery::default(), &PageRequest::default()).await;
        let expected_listing = if who == "other admin" { "ok" } else { expected };
        assert_eq!(outcome(&listed), expected_listing, "list by {who}");
        if let Ok(page) = listed {
            let sees_target = page.items.iter().any(|key| key.id == target.id);
            assert_eq!(sees_target, expected == "ok", "{who} sees the site's keys only if it manages them");
            let sees_master = page.items.iter().any(|key| key.permission == Permission::Master);
            assert_eq!(sees_master, who == "master", "only Master sees Master keys");
        }
    }
}

#[tokio::test]
async fn creating_a_key_never_grants_above_the_callers_level_or_outside_its_site() {
    let world = World::new().await;
    let callers = world.callers().await;
    let admin = &callers[1].1;
    let keys = world.service.keys();
    let create = |permission, site| keys.create(admin, new_key("new", permission, site));
    assert_eq!(outcome(&create(Permission::Admin, Some(&world.site)).await), "ok");
    assert_eq!(outcome(&create(Permission::Read, Some(&world.other_site)).await), "denied");
    assert_eq!(outcome(&create(Permission::Master, None).await), "denied");
    for (who, caller) in &callers[3..] {
        let result = keys.create(caller, new_key("new", Permission::Read, Some(&world.site))).await;
        assert_eq!(outcome(&result), "denied", "{who} cannot create keys");
    }
    let master = &callers[0].1;
    let result = keys.create(master, new_key("m2", Permission::Master, Some(&world.site))).await;
    assert_eq!(outcome(&result), "invalid", "a Master key has no site");
    let mut past = new_key("late", Permission::Read, Some(&world.site));
    past.expires_at = Some(world.service.now() - chrono::Duration::seconds(1));
    assert_eq!(outcome(&keys.create(master, past).await), "invalid", "an expiry in the past");
}

#[tokio::test]
async fn raising_a_key_above_the_editors_level_is_refused() {
    let world = World::new().await;
    let callers = world.callers().await;
    let admin = &callers[1].1;
    let target = world.key("t", Permission::Read, Some(&world.site)).await.0;
    let to_master = KeyEdit { permission: Some(Permission::Master), ..KeyEdit::default() };
    let result = world.service.keys().edit(admin, &target.id.to_string(), &to_master).await;
    assert!(matches!(result, Err(ServiceError::Denied(Denied::InsufficientPermission(_)))), "{result:?}");
}

#[tokio::test]
async fn only_master_manages_sites_and_others_see_their_own_site_only() {
    let world = World::new().await;
    for (who, caller) in world.callers().await {
        let sites = world.service.sites();
        let may = who == "master";
        let created = sites.create(&caller, SiteName::parse("New").unwrap()).await;
        assert_eq!(created.is_ok(), may, "create by {who}");
        let id = world.site.id.to_string();
        let renamed = sites.rename(&caller, &id, SiteName::parse("Blog 2").unwrap()).await;
        assert_eq!(renamed.is_ok(), may, "rename by {who}");
        let seen = sites.get(&caller, &id).await;
        assert_eq!(seen.is_ok(), who != "other admin", "get own site by {who}");
        let listed = sites.list(&caller, &PageRequest::default()).await.unwrap().items;
        assert_eq!(listed.len() > 1, may, "{who} lists all sites only as Master");
    }
}

#[tokio::test]
async fn the_audit_trail_is_for_admins_of_the_site_and_master() {
    let world = World::new().await;
    for (who, caller) in world.callers().await {
        let events = world.service.audit().list(&caller, Default::default(), &PageRequest::default()).await;
        assert_eq!(events.is_ok(), matches!(who, "master" | "admin" | "other admin"), "audit by {who}");
    }
}

#[tokio::test]
async fn deleting_a_site_stops_its_keys_at_once() {
    let world = World::new().await;
    let (_, secret) = world.key("k", Permission::Read, Some(&world.site)).await;
    let check = Check::default();
    let before = world.service.verify(Presented::Key(secret.expose()), &check).await.unwrap();
    assert!(matches!(before, Verdict::Allowed { .. }));
    world.service.sites().delete(&Caller::system(), &world.site.id.to_string()).await.unwrap();
    let after = world.service.verify(Presented::Key(secret.expose()), &check).await.unwrap();
    assert_eq!(after.allowed().err(), Some(Refusal::InvalidKey));
}

#[tokio::test]
async fn the_last_master_key_cannot_be_blocked() {
    let world = World::new().await;
    let page =
        world.service.keys().list(&Caller::system(), KeyQuery::default(), &PageRequest::default()).await.unwrap();
    let bootstrap = page.items.iter().find(|key| key.permission == Permission::Master).unwrap();
    let master = caller_of(bootstrap);
    let result = world.service.keys().block(&master, &bootstrap.id.to_string()).await;
    assert!(matches!(result, Err(ServiceError::LastMaster)), "{result:?}");
}

async fn refusal(world: &World, presented: Presented<'_>, check: &Check) -> Option<Refusal> {
    world.service.verify(presented, check).await.unwrap().allowed().err()
}

#[tokio::test]
async fn the_verification_entry_gives_each_refusal_in_one_vocabulary() {
    let world = World::new().await;
    let (read, secret) = world.key("r", Permission::Read, Some(&world.site)).await;
    let key = Presented::Key(secret.expose());
    let any = Check::default();
    assert_eq!(refusal(&world, key, &any).await, None);
    assert_eq!(refusal(&world, Presented::Nothing, &any).await, Some(Refusal::MissingKey));
    assert_eq!(refusal(&world, Presented::Key("lk_nope"), &any).await, Some(Refusal::InvalidKey));
    let admin_only = Check::default().requiring(Requirement::dashboard());
    assert_eq!(refusal(&world, key, &admin_only).await, Some(Refusal::InsufficientPermission));
    let other_site = Check {
        requirement: Requirement { site: Some(world.other_site.id.ulid()), ..Requirement::default() },
        ..Check::default()
    };
    assert_eq!(refusal(&world, key, &other_site).await, Some(Refusal::WrongSite));
    let scoped = Check {
        requirement: Requirement { scopes: Scopes::parse(&["flows:execute"]).unwrap(), ..Requirement::default() },
        ..Check::default()
    };
    assert_eq!(refusal(&world, key, &scoped).await, Some(Refusal::MissingScope));
    let master = Caller::system();
    let only_ten = KeyEdit {
        ip_allowlist: Some(latchkey_core::options::parse_allowlist(&["10.0.0.0/8"]).unwrap()),
        ..KeyEdit::default()
    };
    world.service.keys().edit(&master, &read.id.to_string(), &only_ten).await.unwrap();
    let from_home = Check::any_valid_key(Some("192.0.2.1".parse().unwrap()));
    assert_eq!(refusal(&world, key, &from_home).await, Some(Refusal::IpNotAllowed));
    let from_ten = Check::any_valid_key(Some("10.1.2.3".parse().unwrap()));
    assert_eq!(refusal(&world, key, &from_ten).await, None);
    world.service.keys().block(&master, &read.id.to_string()).await.unwrap();
    assert_eq!(refusal(&world, key, &from_ten).await, Some(Refusal::Blocked), "refused the moment block returns");
}

#[tokio::test]
async fn an_expired_key_is_refused_from_its_expiry_on_the_clock() {
    let world = World::new().await;
    let mut spec = new_key("soon", Permission::Read, Some(&world.site));
    spec.expires_at = Some(world.service.now() + chrono::Duration::seconds(10));
    let (_, secret) = world.service.keys().create(&Caller::system(), spec).await.unwrap();
    let key = Presented::Key(secret.expose());
    assert_eq!(refusal(&world, key, &Check::default()).await, None);
    world.clock.advance(chrono::Duration::seconds(10));
    assert_eq!(refusal(&world, key, &Check::default()).await, Some(Refusal::Expired));
}

#[tokio::test]
async fn a_session_presented_by_hash_passes_the_same_checks() {
    let world = World::new().await;
    let (admin, secret) = world.key("a", Permission::Admin, Some(&world.site)).await;
    let hash = secret.hash();
    let dashboard = Check::default().requiring(Requirement::dashboard());
    assert_eq!(refusal(&world, Presented::Hash(&hash), &dashboard).await, None);
    world.service.keys().block(&Caller::system(), &admin.id.to_string()).await.unwrap();
    assert_eq!(refusal(&world, Presented::Hash(&hash), &dashboard).await, Some(Refusal::Blocked));
}

#[tokio::test]
async fn leak_reports_block_valid_keys_and_say_nothing_about_which() {
    let world = World::new().await;
    let (leaked, secret) = world.key("leaked", Permission::Read, Some(&world.site)).await;
    let report = vec![secret.expose().to_owned(), "lk_not_a_key".to_owned()];
    let received = world.service.leaks().report(&report, "https://example.com/paste", None).await.unwrap();
    assert_eq!(received, 2);
    let after = world.service.keys().get(&Caller::system(), &leaked.id.to_string()).await.unwrap();
    assert_eq!(after.status, Status::Blocked);
    let empty = world.service.leaks().report(&[], "x", None).await;
    assert!(matches!(empty, Err(ServiceError::Invalid(_))));
}

#[tokio::test]
async fn credits_beyond_what_the_store_can_hold_are_refused_and_the_largest_is_kept_exactly() {
    let world = World::new().await;
    let master = Caller::system();
    let refill = |amount| Some(latchkey_core::Refill { interval: latchkey_core::RefillInterval::Daily, amount });
    for (remaining, refill) in [(1u64 << 63, None), (5, refill(u64::MAX)), (u64::MAX, None)] {
        let mut spec = new_key("rich", Permission::Read, Some(&world.site));
        spec.options.credits = Some(latchkey_core::Credits { remaining, refill, refilled_at: None });
        let result = world.service.keys().create(&master, spec).await;
        assert!(matches!(result, Err(ServiceError::Invalid(_))), "{remaining} / {refill:?}: {result:?}");
    }
    let largest = latchkey_service::keys::MAX_CREDITS;
    let mut spec = new_key("rich", Permission::Read, Some(&world.site));
    spec.options.credits = Some(latchkey_core::Credits { remaining: largest, refill: None, refilled_at: None });
    let (created, _) = world.service.keys().create(&master, spec).await.unwrap();
    let stored = world.service.keys().get(&master, &created.id.to_string()).await.unwrap();
    assert_eq!(stored.options.credits.unwrap().remaining, largest, "read back exactly");
    let too_many = latchkey_core::CreditsEdit { remaining: largest + 1, refill: None };
    let edit = KeyEdit { credits: Some(Some(too_many)), ..KeyEdit::default() };
    let result = world.service.keys().edit(&master, &created.id.to_string(), &edit).await;
    assert!(matches!(result, Err(ServiceError::Invalid(_))), "{result:?}");
}

#[tokio::test]
async fn a_rotated_key_keeps_its_expiry_takes_the_balance_and_an_expired_key_cannot_be_rotated() {
    let world = World::new().await;
    let master = Caller::system();
    let expiry = world.service.now() + chrono::Duration::days(10);
    let mut spec = new_key("metered", Permission::Read, Some(&world.site));
    spec.expires_at = Some(expiry);
    spec.options.credits = Some(latchkey_core::Credits { remaining: 2, refill: None, refilled_at: None });
    let (old, old_secret) = world.service.keys().create(&master, spec).await.unwrap();
    let (new, new_secret) = world.service.keys().rotate(&master, &old.id.to_string(), 3600).await.unwrap();
    assert_eq!(new.expires_at.map(|t| t.timestamp_millis()), Some(expiry.timestamp_millis()), "no longer life");
    let spend = |secret: &SecretKey| {
        let check = Check { cost: Some(1), ..Check::default() };
        let key = secret.expose().to_owned();
        let service = world.service.clone();
        async move { service.verify(Presented::Key(&key), &check).await.unwrap().allowed().err() }
    };
    assert_eq!(spend(&old_secret).await, Some(Refusal::UsageExceeded), "the old key has nothing left to spend");
    assert_eq!(spend(&new_secret).await, None);
    assert_eq!(spend(&new_secret).await, None);
    assert_eq!(spend(&new_secret).await, Some(Refusal::UsageExceeded), "two uses in all, not four");

    let mut short = new_key("short", Permission::Read, Some(&world.site));
    short.expires_at = Some(world.service.now() + chrono::Duration::seconds(5));
    let (short, _) = world.service.keys().create(&master, short).await.unwrap();
    world.clock.advance(chrono::Duration::seconds(5));
    let result = world.service.keys().rotate(&master, &short.id.to_string(), 0).await;
    assert!(matches!(result, Err(ServiceError::Conflict(_))), "{result:?}");
}

#[tokio::test]
async fn a_cached_answer_is_served_no_longer_than_a_fractional_staleness_bound_on_the_clock() {
    let world = World::new().await;
    let path = world._dir.path().join("service.db");
    let other_store = latchkey_sqlite::SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let config =
        ServiceConfig { cache_max_staleness: Some(std::time::Duration::from_millis(500)), ..ServiceConfig::default() };
    // Another instance on the same database, which hears nothing of this one's changes.
    let other = Service::new(Arc::new(other_store), config, world.clock.clone());
    let (key, secret) = world.key("k", Permission::Read, Some(&world.site)).await;
    let presented = Presented::Key(secret.expose());
    assert!(matches!(other.verify(presented, &Check::default()).await.unwrap(), Verdict::Allowed { .. }));
    world.service.keys().block(&Caller::system(), &key.id.to_string()).await.unwrap();
    world.clock.advance(chrono::Duration::milliseconds(300));
    let cached = other.verify(presented, &Check::default()).await.unwrap().allowed().err();
    assert_eq!(cached, None, "0.3 s old: still the cached answer");
    world.clock.advance(chrono::Duration::milliseconds(300));
    let reread = other.verify(presented, &Check::default()).await.unwrap().allowed().err();
    assert_eq!(reread, Some(Refusal::Blocked), "0.6 s old: past the 0.5 s bound, read again");
}

#[tokio::test]
async fn bookkeeping_writes_the_last_second_used_and_every_request_counted_once() {
    let world = World::new().await;
    let (read, secret) = world.key("counted", Permission::Read, Some(&world.site)).await;
    let (id, key) = (read.id.to_string(), Presented::Key(secret.expose()));
    let master = Caller::system();
    let admin_only = Check::default().requiring(Requirement::dashboard());
    for _ in 0..3 {
        assert_eq!(refusal(&world, key, &Check::default()).await, None);
    }
    assert_eq!(refusal(&world, key, &admin_only).await, Some(Refusal::InsufficientPermission));
    world.clock.advance(chrono::Duration::milliseconds(2_500));
    let last_use = world.service.now();
    assert_eq!(refusal(&world, key, &Check::default()).await, None);
    world.service.write_bookkeeping().await.unwrap();
    let stored = world.service.keys().get(&master, &id).await.unwrap();
    assert_eq!(stored.last_used_at.map(|at| at.timestamp()), Some(last_use.timestamp()), "kept to the second");
    assert_eq!(requests_counted(&world, &id).await, (4, 1));
    // A second flush with nothing new writes nothing more.
    world.service.write_bookkeeping().await.unwrap();
    assert_eq!(requests_counted(&world, &id).await, (4, 1));
}

/// Allowed and refused requests of the key `id`, summed over its usage days.
async fn requests_counted(world: &World, id: &str) -> (u64, u64) {
    let usage = world.service.keys().usage(&Caller::system(), id, 1).await.unwrap();
    usage.iter().fold((0, 0), |(allowed, refused), day| (allowed + day.allowed, refused + day.refused))
}

#[tokio::test]
async fn concurrent_misses_are_read_together_and_each_gets_its_own_answer() {
    let world = World::new().await;
    let mut secrets = Vec::new();
    for n in 0..120 {
        secrets.push(world.key(&format!("cold {n}"), Permission::Read, Some(&world.site)).await.1);
    }
    let (blocked, blocked_secret) = world.key("blocked", Permission::Read, Some(&world.site)).await;
    world.service.keys().block(&Caller::system(), &blocked.id.to_string()).await.unwrap();
    // Another service on the same file: nothing of this is cached there yet.
    let path = world._dir.path().join("service.db");
    let store = latchkey_sqlite::SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let cold = Service::new(Arc::new(store), ServiceConfig::default(), world.clock.clone());
    let mut presented: Vec<(String, Option<Refusal>)> = secrets.iter().map(|s| (s.expose().to_owned(), None)).collect();
    presented.push((blocked_secret.expose().to_owned(), Some(Refusal::Blocked)));
    presented.push((latchkey_core::KeyFormat::default().generate().expose().to_owned(), Some(Refusal::InvalidKey)));
    // On this one-thread runtime every check queues its miss before any read comes back.
    let checks: Vec<_> = presented
        .iter()
        .map(|(secret, _)| {
            let (cold, secret) = (cold.clone(), secret.clone());
            tokio::spawn(async move {
                cold.verify(Presented::Key(&secret), &Check::default()).await.unwrap().allowed().err()
            })
        })
        .collect();
    for (check, (_, expected)) in checks.into_iter().zip(&presented) {
        assert_eq!(check.await.unwrap(), *expected);
    }
    assert_eq!(cold.store_reads(), presented.len() as u64, "one read per key");
    let batches = cold.store_read_batches();
    assert!(batches <= 8, "{} misses took {batches} store calls", presented.len());
}
