//! Checks on the outbox and webhook deliveries: events are written with their change (or
//! not at all), reach the endpoints that want them, and are claimed oldest first, once
//! per endpoint, until delivered.

use super::new_key;
use super::support::{blocked, event, store_key, store_site};
use crate::outbox::OutboxEvent;
use crate::webhooks::{Claim, ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, FinishedAttempt, WebhookEndpoint};
use crate::{truncate_to_millis, Audited, SharedStore, StoreError};
use chrono::{DateTime, Duration, Utc};
use latchkey_core::{AuditAction, AuditEvent, Permission, SiteId};

fn endpoint(site: Option<&SiteId>, events: &[&str]) -> WebhookEndpoint {
    let now = truncate_to_millis(Utc::now());
    WebhookEndpoint {
        id: format!("whk_{}", ulid::Ulid::new()),
        site_id: site.cloned(),
        url: "https://receiver.example/hook".into(),
        description: None,
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: "whsec_c2VjcmV0".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    }
}

async fn claim(store: &SharedStore, at: DateTime<Utc>) -> Vec<ClaimedDelivery> {
    store.webhooks().claim_deliveries(Claim { now: at, until: at + Duration::seconds(60), limit: 100 }).await.unwrap()
}

fn types_for(claimed: &[ClaimedDelivery], endpoint: &WebhookEndpoint) -> Vec<String> {
    claimed.iter().filter(|d| d.endpoint.id == endpoint.id).map(|d| d.event.event.event_type.clone()).collect()
}

async fn finish(store: &SharedStore, delivery: &ClaimedDelivery, outcome: DeliveryOutcome) {
    let attempt = DeliveryAttempt {
        id: 0,
        endpoint_id: delivery.endpoint.id.clone(),
        event_id: delivery.event.event.id.clone(),
        event_type: delivery.event.event.event_type.clone(),
        attempt: delivery.attempts + 1,
        at: truncate_to_millis(Utc::now()),
        status_code: Some(500),
        error: None,
        duration_ms: 3,
        next_retry_at: None,
    };
    store.webhooks().finish_delivery(delivery, &FinishedAttempt { attempt, outcome }).await.unwrap();
}

/// The audit event a webhook change is written with (by the system, for these checks).
fn audited(action: AuditAction) -> AuditEvent {
    AuditEvent::new(&latchkey_core::Caller::system().actor, action, truncate_to_millis(Utc::now()))
}

pub async fn a_change_writes_its_event_for_the_endpoints_that_want_it(store: SharedStore) {
    let site = store_site(&store, "events").await;
    let everything = endpoint(None, &[]);
    let blocks_of_site = endpoint(Some(&site.id), &["key.blocked"]);
    store.webhooks().create_webhook(&everything, &audited(AuditAction::WebhookCreated)).await.unwrap();
    store.webhooks().create_webhook(&blocks_of_site, &audited(AuditAction::WebhookCreated)).await.unwrap();
    let key = store_key(&store, Permission::Read, Some(&site.id)).await;
    let block = event(AuditAction::KeyBlocked).for_key(&key);
    store.update_key(&key, Audited { value: &blocked(&key), event: &block }).await.unwrap();
    let master = store_key(&store, Permission::Master, None).await;

    let claimed = claim(&store, Utc::now()).await;
    // One delivery per endpoint at a time: the oldest it wants, from its registration on.
    assert_eq!(types_for(&claimed, &everything), ["key.created"]);
    assert_eq!(types_for(&claimed, &blocks_of_site), ["key.blocked"]);
    let feed = store.webhooks().events_after(0, None, 100).await.unwrap();
    let types: Vec<&str> = feed.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["site.created", "key.created", "key.blocked", "key.created"]);
    assert_eq!(feed[2].event.id, block.id.to_string(), "the event is the audit record's");
    assert_eq!(feed[3].event.key_id.as_ref(), Some(&master.id));
    let of_site = store.webhooks().events_after(0, Some(&site.id), 100).await.unwrap();
    assert_eq!(of_site.len(), 3, "a Master key's event is no site's");
    assert!(feed.iter().all(|e| !e.event.data.contains("hash")), "{feed:?}");
}

pub async fn a_refused_change_writes_no_event(store: SharedStore) {
    let only = store_key(&store, Permission::Master, None).await;
    let before = store.webhooks().events_after(0, None, 100).await.unwrap().len();
    let block = event(AuditAction::KeyBlocked).for_key(&only);
    let refused = store.update_key(&only, Audited { value: &blocked(&only), event: &block }).await;
    assert!(matches!(refused, Err(StoreError::LastMaster)), "{refused:?}");
    let missing_site = new_key(Permission::Read, Some(&SiteId::generate()));
    let created = event(AuditAction::KeyCreated).for_key(&missing_site);
    assert!(store.create_key(Audited { value: &missing_site, event: &created }).await.is_err());
    assert_eq!(store.webhooks().events_after(0, None, 100).await.unwrap().len(), before);
}

pub async fn deliveries_are_claimed_once_in_order_and_retried_when_due(store: SharedStore) {
    let receiver = endpoint(None, &[]);
    store.webhooks().create_webhook(&receiver, &audited(AuditAction::WebhookCreated)).await.unwrap();
    let site = store_site(&store, "ordered").await;
    store_key(&store, Permission::Read, Some(&site.id)).await;
    let now = Utc::now();
    let first = claim(&store, now).await;
    assert_eq!(types_for(&first, &receiver), ["site.created"]);
    assert!(claim(&store, now).await.is_empty(), "a claimed delivery is nobody else's");
    let retry_at = now + Duration::seconds(5);
    finish(&store, &first[0], DeliveryOutcome::Retry { at: retry_at, failing: true }).await;
    assert!(claim(&store, now).await.is_empty(), "the later event waits behind the failed one");
    let failing = store.webhooks().get_webhook(&receiver.id).await.unwrap().unwrap();
    assert!(failing.failing_since.is_some());
    let again = claim(&store, retry_at).await;
    assert_eq!((types_for(&again, &receiver), again[0].attempts), (vec!["site.created".to_owned()], 1));
    assert_eq!(again[0].event.event.id, first[0].event.event.id, "the same event id on every attempt");
    finish(&store, &again[0], DeliveryOutcome::Delivered).await;
    let next = claim(&store, retry_at).await;
    assert_eq!(types_for(&next, &receiver), ["key.created"]);
    assert!(store.webhooks().get_webhook(&receiver.id).await.unwrap().unwrap().failing_since.is_none());
    let attempts = store.webhooks().list_attempts(&receiver.id, &crate::Page { after: None, limit: 10 }).await;
    assert_eq!(attempts.unwrap().len(), 2);
}

pub async fn a_claim_that_runs_out_is_taken_over(store: SharedStore) {
    let receiver = endpoint(None, &[]);
    store.webhooks().create_webhook(&receiver, &audited(AuditAction::WebhookCreated)).await.unwrap();
    store_site(&store, "abandoned").await;
    let now = Utc::now();
    assert_eq!(claim(&store, now).await.len(), 1);
    assert!(claim(&store, now + Duration::seconds(59)).await.is_empty());
    let taken_over = claim(&store, now + Duration::seconds(61)).await;
    assert_eq!((taken_over.len(), taken_over[0].attempts), (1, 0));
}

pub async fn an_event_id_is_written_once_and_test_events_go_to_one_endpoint(store: SharedStore) {
    let (one, other) = (endpoint(None, &[]), endpoint(None, &[]));
    store.webhooks().create_webhook(&one, &audited(AuditAction::WebhookCreated)).await.unwrap();
    store.webhooks().create_webhook(&other, &audited(AuditAction::WebhookCreated)).await.unwrap();
    let key = store_key(&store, Permission::Master, None).await;
    let at = truncate_to_millis(Utc::now());
    let reminder = OutboxEvent::about_key("evt_expiring7d_x".into(), "key.expiring", at, &key, serde_json::json!({}));
    assert!(store.webhooks().enqueue_event(&reminder, None).await.unwrap());
    assert!(!store.webhooks().enqueue_event(&reminder, None).await.unwrap(), "written once");
    let test = OutboxEvent { id: "evt_test_1".into(), event_type: "webhook.test".into(), ..reminder.clone() };
    assert!(store.webhooks().enqueue_event(&test, Some(&one.id)).await.unwrap());
    assert_eq!(store.webhooks().pending_deliveries(&one.id).await.unwrap(), 3);
    assert_eq!(store.webhooks().pending_deliveries(&other.id).await.unwrap(), 2);
    let feed = store.webhooks().events_after(0, None, 100).await.unwrap();
    assert!(feed.iter().all(|e| e.event.event_type != "webhook.test"), "test events are not in the feed");
    store.webhooks().delete_webhook(&one.id, &audited(AuditAction::WebhookDeleted)).await.unwrap();
    assert_eq!(store.webhooks().pending_deliveries(&one.id).await.unwrap(), 0);
    assert!(matches!(
        store.webhooks().delete_webhook(&one.id, &audited(AuditAction::WebhookDeleted)).await,
        Err(StoreError::NotFound)
    ));
}
