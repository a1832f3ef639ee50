//! Checks on what verification records: last use, usage counts, spent credits.

use super::new_key;
use super::support::{event, store_key};
use crate::{truncate_to_millis, Audited, CreditSpend, SharedStore, UsageCount};
use chrono::{Duration, Utc};
use latchkey_core::{AuditAction, Credits, KeyRecord, Permission, Refill, RefillInterval};

pub async fn last_used_only_moves_forward(store: SharedStore) {
    let key = store_key(&store, Permission::Master, None).await;
    let later = truncate_to_millis(Utc::now());
    let earlier = later - Duration::minutes(5);
    store.record_last_used(&[(key.id.clone(), later)]).await.unwrap();
    store.record_last_used(&[(key.id.clone(), earlier)]).await.unwrap();
    assert_eq!(store.get_key(&key.id).await.unwrap().unwrap().last_used_at, Some(later));
}

pub async fn usage_counts_add_up_per_key_and_day(store: SharedStore) {
    let key = store_key(&store, Permission::Master, None).await;
    let other = store_key(&store, Permission::Master, None).await;
    let count = |key: &KeyRecord, day, allowed, refused| UsageCount { key_id: key.id.clone(), day, allowed, refused };
    store.record_usage(&[count(&key, 100, 3, 1), count(&other, 100, 5, 0)]).await.unwrap();
    store.record_usage(&[count(&key, 100, 2, 2), count(&key, 101, 1, 0)]).await.unwrap();
    let gone = new_key(Permission::Read, None);
    store.record_usage(&[count(&gone, 100, 1, 1)]).await.expect("a deleted key's counts are skipped");
    let mut rows = store.usage(std::slice::from_ref(&key.id), 100).await.unwrap();
    rows.sort_by_key(|row| row.day);
    assert_eq!(rows, [count(&key, 100, 5, 3), count(&key, 101, 1, 0)]);
    assert_eq!(store.usage(&[key.id.clone(), other.id.clone()], 101).await.unwrap().len(), 1);
}

pub async fn credits_are_spent_exactly_under_concurrency_and_refilled(store: SharedStore) {
    let mut key = new_key(Permission::Master, None);
    let now = Utc::now();
    key.options.credits = Some(Credits { remaining: 10, refill: None, refilled_at: None });
    store.create_key(Audited { value: &key, event: &event(AuditAction::KeyCreated) }).await.unwrap();
    let spenders: Vec<_> = (0..32)
        .map(|_| {
            let (store, id) = (store.clone(), key.id.clone());
            tokio::spawn(async move { store.spend_credits(&id, 1, now).await.unwrap() })
        })
        .collect();
    let mut spent = 0;
    for spender in spenders {
        if let CreditSpend::Spent { .. } = spender.await.unwrap() {
            spent += 1;
        }
    }
    assert_eq!(spent, 10, "exactly the balance is spent");
    assert_eq!(store.spend_credits(&key.id, 1, now).await.unwrap(), CreditSpend::Exhausted);
    let plain = store_key(&store, Permission::Master, None).await;
    assert_eq!(store.spend_credits(&plain.id, 1, now).await.unwrap(), CreditSpend::NotLimited);

    let mut daily = new_key(Permission::Master, None);
    let refill = Refill { interval: RefillInterval::Daily, amount: 3 };
    daily.options.credits =
        Some(Credits { remaining: 0, refill: Some(refill), refilled_at: Some(refill.interval.period_start(now)) });
    store.create_key(Audited { value: &daily, event: &event(AuditAction::KeyCreated) }).await.unwrap();
    assert_eq!(store.spend_credits(&daily.id, 1, now).await.unwrap(), CreditSpend::Exhausted);
    let tomorrow = now + Duration::days(1);
    assert_eq!(store.spend_credits(&daily.id, 1, tomorrow).await.unwrap(), CreditSpend::Spent { remaining: 2 });
    assert_eq!(store.get_key(&daily.id).await.unwrap().unwrap().options.credits.unwrap().remaining, 2);
}
