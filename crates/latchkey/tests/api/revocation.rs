//! Revocation under load, many times over: in each trial, verifiers hammer a key while it
//! is blocked; no verification that starts after the block call has returned may succeed.
//! The suite runs 50 trials on each engine; `LATCHKEY_REVOCATION_TRIALS=1000` runs more
//! (docs/RELIABILITY.md).

use crate::helpers::{eventually, spawn_app_with_sites};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn trials() -> usize {
    std::env::var("LATCHKEY_REVOCATION_TRIALS").ok().and_then(|n| n.parse().ok()).unwrap_or(50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_many_trials_no_check_that_starts_after_a_block_returns_succeeds() {
    let (app, [site]) = spawn_app_with_sites(["revocation"]).await;
    let app = Arc::new(app);
    let (mut checked_after, mut violations) = (0, 0);
    for _ in 0..trials() {
        let (id, key) = app.create_key("read", Some(&site)).await;
        let blocked = Arc::new(AtomicBool::new(false));
        let (before, after, bad) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let verifiers: Vec<_> = (0..8)
            .map(|_| {
                let (app, key, blocked) = (app.clone(), key.clone(), blocked.clone());
                let (before, after, bad) = (before.clone(), after.clone(), bad.clone());
                tokio::spawn(async move {
                    while after.load(Ordering::SeqCst) < 40 {
                        let started_after_block = blocked.load(Ordering::SeqCst);
                        let (_, answer) =
                            app.call(reqwest::Method::POST, "/api/v1/verify", None, Some(json!({ "key": key }))).await;
                        let counter = if started_after_block { &after } else { &before };
                        counter.fetch_add(1, Ordering::SeqCst);
                        if started_after_block && answer["valid"] == true {
                            bad.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        // The key is cached and in use before it is blocked.
        let warm = eventually(Duration::from_secs(10), || async { before.load(Ordering::SeqCst) >= 16 }).await;
        assert!(warm, "the verifiers did not start");
        app.block(&id).await;
        blocked.store(true, Ordering::SeqCst);
        for verifier in verifiers {
            verifier.await.unwrap();
        }
        checked_after += after.load(Ordering::SeqCst);
        violations += bad.load(Ordering::SeqCst);
    }
    eprintln!(
        "{} trials: {checked_after} verifications started after a block returned, {violations} succeeded",
        trials()
    );
    assert_eq!(violations, 0, "a blocked key was accepted after its block returned");
}
