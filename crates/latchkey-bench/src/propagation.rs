//! The revocation probe of the two-instance PostgreSQL run: while both instances serve
//! verify traffic, it creates a key on A, has B cache it, blocks it on A, and times how
//! long B goes on accepting it after A's block call returned (B learns of the block from
//! PostgreSQL's NOTIFY). A must refuse the key on the very next request; B's accepting
//! answers after the block returned are counted, not hidden in a latency.

use crate::load::Caller;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use latchkey_core::ParsedKey;
use serde::Serialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The longest the probe waits for B to refuse a blocked key before it gives up on that
/// key (and reports it): far above the 5 s staleness bound B falls back on.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15);
const SLOW: Duration = Duration::from_millis(100);

pub struct Probe {
    pub a: SocketAddr,
    pub b: SocketAddr,
    pub master: String,
    pub site: String,
    /// Probing starts here (after the load's warm-up) and stops starting keys here.
    pub from: Instant,
    pub until: Instant,
    /// Keys to block, spread evenly over the window.
    pub keys: usize,
}

#[derive(Debug, Serialize)]
pub struct Propagation {
    /// Keys blocked on A and then refused on B.
    pub probes: usize,
    /// From A's block answer to B's first refusing answer (both received by the probe).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Probes whose propagation took over 100 ms: the outliers, counted.
    pub slower_than_100ms: usize,
    /// B's answers that accepted a key after A's block call had returned, over all probes.
    pub accepted_by_b_after_block: u64,
    /// Probes in which A itself accepted the key after its own block returned (must be 0).
    pub accepted_by_a_after_block: u64,
    /// Keys B still accepted `GIVE_UP_AFTER` after the block (must be 0).
    pub never_refused_by_b: usize,
}

/// Runs the probe on its own thread and runtime, so that its timings are not queued
/// behind the load generator's tasks.
pub fn spawn(probe: Probe) -> std::thread::JoinHandle<Result<Propagation>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(run(probe))
    })
}

async fn run(probe: Probe) -> Result<Propagation> {
    let mut on_a = Caller::connect(probe.a).await?;
    let mut on_b = Caller::connect(probe.b).await?;
    let mut latency = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let mut result = Propagation {
        probes: 0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
        slower_than_100ms: 0,
        accepted_by_b_after_block: 0,
        accepted_by_a_after_block: 0,
        never_refused_by_b: 0,
    };
    let spacing = probe.until.saturating_duration_since(probe.from) / probe.keys.max(1) as u32;
    tokio::time::sleep_until(probe.from.into()).await;
    for n in 0..probe.keys {
        let slot = probe.from + spacing * n as u32;
        tokio::time::sleep_until(slot.into()).await;
        if Instant::now() >= probe.until {
            break;
        }
        let (id, key) = create(&mut on_a, &probe, n).await?;
        anyhow::ensure!(on_b.is_valid(&key).await?, "B refused a key A had just created");
        let (status, body) =
            on_a.call(Method::POST, &format!("/api/v1/keys/{id}/block"), Some(&probe.master), None).await?;
        anyhow::ensure!(status == StatusCode::OK, "block on A answered {status}: {body}");
        let returned = Instant::now();
        let blocked_at = chrono::Utc::now();
        if on_a.is_valid(&key).await? {
            result.accepted_by_a_after_block += 1;
        }
        loop {
            if !on_b.is_valid(&key).await? {
                latency.saturating_record(returned.elapsed().as_nanos() as u64);
                if returned.elapsed() > SLOW {
                    result.slower_than_100ms += 1;
                    let hash = ParsedKey::parse(&key).map(|parsed| hex_prefix(&parsed.hash()));
                    println!(
                        "  slow probe: blocked at {} (hash {}), refused by B {:.0} ms later",
                        blocked_at.format("%H:%M:%S%.3f"),
                        hash.unwrap_or_default(),
                        returned.elapsed().as_secs_f64() * 1e3
                    );
                }
                result.probes += 1;
                break;
            }
            result.accepted_by_b_after_block += 1;
            if returned.elapsed() > GIVE_UP_AFTER {
                result.never_refused_by_b += 1;
                break;
            }
        }
    }
    result.p50_ms = latency.value_at_quantile(0.50) as f64 / 1e6;
    result.p99_ms = latency.value_at_quantile(0.99) as f64 / 1e6;
    result.max_ms = latency.max() as f64 / 1e6;
    Ok(result)
}

/// The first 12 hex digits of a key's hash, as the servers' trace lines show it.
fn hex_prefix(hash: &latchkey_core::KeyHash) -> String {
    hash.0[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A new Read key on the seeded site, made through A's management API: its id and the key.
async fn create(on_a: &mut Caller, probe: &Probe, n: usize) -> Result<(String, String)> {
    let body = json!({ "name": format!("propagation probe {n}"), "permission": "read", "site_id": probe.site });
    let (status, created) = on_a.call(Method::POST, "/api/v1/keys", Some(&probe.master), Some(body)).await?;
    anyhow::ensure!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "create on A answered {status}: {created}"
    );
    let id = created["id"].as_str().context("no id in the created key")?.to_owned();
    let key = created["key"].as_str().context("no key in the created key")?.to_owned();
    Ok((id, key))
}
