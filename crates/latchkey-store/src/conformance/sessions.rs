//! Dashboard sessions: stored, found, changed by compare-and-set only, pruned when idle.

use crate::sessions::{SessionChange, SessionRecord};
use crate::SharedStore;
use chrono::{Duration, Utc};
use latchkey_core::KeyFormat;

fn new_session(id_byte: u8) -> SessionRecord {
    let now = crate::truncate_to_millis(Utc::now());
    SessionRecord {
        id_hash: [id_byte; 32],
        key_hash: KeyFormat::default().generate().hash(),
        key_prefix: "lk_abcdefghi".to_owned(),
        csrf_token: format!("token-{id_byte}"),
        created_at: now,
        last_seen_at: now,
        state: "{}".to_owned(),
        version: 0,
    }
}

pub async fn a_session_is_found_by_its_id_hash_and_deleted(store: SharedStore) {
    let session = new_session(1);
    store.insert_session(&session).await.unwrap();
    assert_eq!(store.find_session(&session.id_hash).await.unwrap(), Some(session.clone()));
    assert_eq!(store.find_session(&[2; 32]).await.unwrap(), None);
    store.delete_session(&session.id_hash).await.unwrap();
    assert_eq!(store.find_session(&session.id_hash).await.unwrap(), None);
}

pub async fn a_session_changes_only_from_the_version_that_was_read(store: SharedStore) {
    let session = new_session(3);
    store.insert_session(&session).await.unwrap();
    let later = session.last_seen_at + Duration::seconds(5);
    assert!(store
        .update_session(
            &session.id_hash,
            SessionChange { version: 0, state: r#"{"flash":"Saved"}"#, last_seen_at: later }
        )
        .await
        .unwrap());
    // A second writer that read version 0 too loses, and changes nothing.
    assert!(!store
        .update_session(
            &session.id_hash,
            SessionChange { version: 0, state: r#"{"flash":"Other"}"#, last_seen_at: later }
        )
        .await
        .unwrap());
    let stored = store.find_session(&session.id_hash).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.state.as_str(), stored.last_seen_at), (1, r#"{"flash":"Saved"}"#, later));
    assert!(
        !store.update_session(&[9; 32], SessionChange { version: 0, state: "{}", last_seen_at: later }).await.unwrap(),
        "no such session"
    );
}

pub async fn idle_sessions_are_pruned_and_active_ones_kept(store: SharedStore) {
    let idle = SessionRecord { last_seen_at: new_session(4).last_seen_at - Duration::hours(13), ..new_session(4) };
    let active = new_session(5);
    store.insert_session(&idle).await.unwrap();
    store.insert_session(&active).await.unwrap();
    let pruned = store.prune_sessions(active.last_seen_at - Duration::hours(12)).await.unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(store.find_session(&idle.id_hash).await.unwrap(), None);
    assert!(store.find_session(&active.id_hash).await.unwrap().is_some());
}
