//! Criterion microbenchmarks of the verification hot path, piece by piece: parse +
//! checksum, SHA-256, and a whole `Service::verify` (the one verification entry) that hits the cache. Together they say
//! how much of a verify request's server time is Latchkey's own work and how much is HTTP.
//! Run with `cargo bench -p latchkey-bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use latchkey_core::{KeyFormat, ParsedKey, Permission};
use latchkey_server::state::AppState;
use latchkey_server::{ServerConfig, SystemClock};
use latchkey_service::{Check, Presented, Verdict};
use latchkey_sqlite::SqliteStore;
use latchkey_store::{conformance, ImportBatch, SharedStore, Store};
use std::hint::black_box;
use std::sync::Arc;

fn parse_and_hash(c: &mut Criterion) {
    let key = KeyFormat::default().generate();
    let presented = key.expose().to_owned();
    c.bench_function("parse + checksum (ParsedKey::parse)", |b| {
        b.iter(|| ParsedKey::parse(black_box(&presented)).is_ok())
    });
    let parsed = ParsedKey::parse(&presented).expect("a generated key parses");
    c.bench_function("SHA-256 (ParsedKey::hash)", |b| b.iter(|| black_box(&parsed).hash()));
}

fn cache_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = KeyFormat::default().generate();
    let service = runtime.block_on(async {
        let path = dir.path().join("bench.db");
        let store = SqliteStore::open(path.to_str().expect("UTF-8 temp path")).await.expect("open store");
        let site = conformance::new_site("Bench");
        // The suite's record builder, with our key's hash: it dropped the key it made.
        let mut key = conformance::new_key(Permission::Read, Some(&site.id));
        key.prefix = secret.display_prefix();
        key.hash = secret.hash();
        store
            .import(&ImportBatch { sites: vec![site], keys: vec![key], ..ImportBatch::default() })
            .await
            .expect("import");
        let store: SharedStore = Arc::new(store);
        // Built the way the server builds it (its default configuration), so the bench
        // follows the server's own choices of capacity and staleness.
        let state = AppState::new(store, ServerConfig::default(), Arc::new(SystemClock));
        let service = state.service.clone();
        // The first check loads the key from SQLite; every one after is a cache hit.
        let first = service.verify(Presented::Key(secret.expose()), &Check::default()).await.expect("store answers");
        assert!(matches!(first, Verdict::Allowed { .. }), "the seeded key verifies");
        service
    });
    assert_eq!(service.cached_keys(), 1);
    let presented = secret.expose().to_owned();
    let check = Check::default();
    c.bench_function("Service::verify, cache hit", |b| {
        b.to_async(&runtime).iter(|| async {
            match service.verify(Presented::Key(black_box(&presented)), &check).await {
                Ok(Verdict::Allowed { key, .. }) => key,
                _ => panic!("a cached key stays usable"),
            }
        })
    });
}

criterion_group!(benches, parse_and_hash, cache_hit);
criterion_main!(benches);
