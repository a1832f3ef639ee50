//! Brute force: a flood of random well-formed keys from one address is throttled (429 once
//! past the failure limit) while a client with a valid key on another address (127.0.0.2)
//! keeps being served; malformed keys never reach the store. The suite sends 20,000
//! guesses; `LATCHKEY_BRUTE_FORCE_KEYS=100000` (see docs/RELIABILITY.md) sends more.

use crate::helpers::spawn_app_with_sites;
use latchkey_core::KeyFormat;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fn guesses() -> usize {
    std::env::var("LATCHKEY_BRUTE_FORCE_KEYS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_guesses_is_throttled_while_a_real_client_elsewhere_is_served() {
    let (app, [site]) = spawn_app_with_sites(["target"]).await;
    let (_, valid) = app.create_key("read", Some(&site)).await;
    let auth = format!("{}/api/v1/auth", app.address);
    let elsewhere = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).build().unwrap();
    let attacker = reqwest::Client::new();

    // Malformed keys (bad checksums) are refused before any lookup.
    let reads_before = app.state.service.store_reads();
    for _ in 0..2_000 {
        let mut key = KeyFormat::default().generate().expose().to_owned();
        key.replace_range(10..11, if &key[10..11] == "A" { "B" } else { "A" });
        attacker.get(&auth).header("X-API-Key", key).send().await.unwrap();
    }
    assert_eq!(app.state.service.store_reads(), reads_before, "a malformed key reached the store");

    let legit = {
        let (elsewhere, auth, valid) = (elsewhere.clone(), auth.clone(), valid.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..400 {
                let started = Instant::now();
                let status = elsewhere.get(&auth).header("X-API-Key", &valid).send().await.unwrap().status();
                latencies.push(started.elapsed());
                assert_eq!(status, 204, "the real client on 127.0.0.2 is served during the flood");
            }
            latencies
        })
    };
    let total = guesses();
    let reads_before_flood = app.state.service.store_reads();
    let flood_started = chrono::Utc::now().timestamp();
    let flood: Vec<_> = (0..8)
        .map(|worker| {
            let (attacker, auth) = (attacker.clone(), auth.clone());
            tokio::spawn(async move {
                let (mut refused, mut throttled) = (0usize, 0usize);
                for _ in (worker..total).step_by(8) {
                    let guess = KeyFormat::default().generate();
                    match attacker
                        .get(&auth)
                        .header("X-API-Key", guess.expose())
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                    {
                        401 => refused += 1,
                        429 => throttled += 1,
                        other => panic!("a guess got {other}"),
                    }
                }
                (refused, throttled)
            })
        })
        .collect();
    let (mut refused, mut throttled) = (0, 0);
    for worker in flood {
        let (r, t) = worker.await.unwrap();
        refused += r;
        throttled += t;
    }
    let mut latencies = legit.await.unwrap();
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let reads = app.state.service.store_reads() - reads_before_flood;
    eprintln!(
        "{total} guesses: {refused} answered 401, {throttled} throttled (429), {reads} store reads; \
         the real client on 127.0.0.2: p50 {p50:?}, p99 {p99:?}"
    );
    // The failure limit is 60 per address per minute-long window (mostly used up by the
    // malformed keys); a flood that crosses into the next window may get 60 more.
    let windows = chrono::Utc::now().timestamp() / 60 - flood_started / 60 + 1;
    assert!(refused as i64 <= 60 * windows, "at most the failure limit per window is answered 401: {refused}");
    assert_eq!(refused + throttled, total);
    assert!(
        attacker.get(&auth).header("X-API-Key", &valid).send().await.unwrap().status() == 204,
        "a valid key from the throttled address itself still passes"
    );
}
