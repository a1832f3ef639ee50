//! Seeds a benchmark database straight through a backend's bulk `import` (SQLite, or
//! PostgreSQL for `--engine postgres`), and keeps the full keys in memory: the store only
//! ever holds their hashes, and the load generator needs the keys themselves to present
//! them.

use anyhow::{Context, Result};
use latchkey_core::{KeyFormat, KeyName, KeyRecord, Permission, Scopes, SiteId};
use latchkey_sqlite::SqliteStore;
use latchkey_store::{conformance, ImportBatch, Store};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

/// Keys per `import` call: one transaction each, large enough that the `synchronous =
/// FULL` fsync per commit is noise, small enough to show progress.
const BATCH: usize = 10_000;

pub struct Seeded {
    /// What `latchkey serve --database` is given: a file path or a `postgres://` URL.
    pub database: String,
    /// Every Read key, in insertion order. The Master key is not in here: the load only
    /// presents site keys, as a protected service would.
    pub keys: Arc<Vec<String>>,
    /// The one site the Read keys belong to.
    pub site: SiteId,
    /// The Master key, for the management calls of the propagation probe.
    pub master: String,
}

/// One key record and the key it was made from. Built on the conformance suite's
/// `new_key` (so new record fields are filled in for us), with our own secret in place of
/// the one it made and dropped: the load generator needs the full key.
fn new_key(format: &KeyFormat, permission: Permission, site: Option<&SiteId>, name: &KeyName) -> (KeyRecord, String) {
    let secret = format.generate();
    let mut record = conformance::new_key(permission, site);
    record.name = name.clone();
    if permission == Permission::Master {
        record.scopes = Scopes::default();
    }
    record.prefix = secret.display_prefix();
    record.hash = secret.hash();
    (record, secret.expose().to_owned())
}

/// Creates the SQLite file `path` with one site, `count` Read keys on it and one Master key.
pub async fn seed(path: &Path, count: usize) -> Result<Seeded> {
    let location = path.to_str().context("temp path is not UTF-8")?;
    let store = SqliteStore::open(location).await.map_err(|e| anyhow::anyhow!("open {location}: {e}"))?;
    let seeded = fill(&store, location, count).await;
    store.close().await;
    seeded
}

/// Fills an empty `store` (which `latchkey serve --database database` opens) with one
/// site, `count` Read keys on it and one Master key.
pub async fn fill(store: &dyn Store, database: &str, count: usize) -> Result<Seeded> {
    let started = Instant::now();
    let site = conformance::new_site("Benchmark");

    // Key generation (CSPRNG + base62 + SHA-256) runs on its own thread while the
    // previous batch is being inserted, so seeding costs max(generate, insert), not both.
    let (batches, received) = mpsc::sync_channel::<(Vec<KeyRecord>, Vec<String>, Option<String>)>(2);
    let site_id = site.id.clone();
    let producer = std::thread::spawn(move || {
        let format = KeyFormat::default();
        let name = KeyName::parse("Astro blog frontend").expect("valid name");
        let mut remaining = count;
        let mut first = true;
        while remaining > 0 || first {
            let size = remaining.min(BATCH);
            let mut records = Vec::with_capacity(size + 1);
            let mut keys = Vec::with_capacity(size);
            let mut master = None;
            if first {
                let (record, key) = new_key(&format, Permission::Master, None, &name);
                records.push(record);
                master = Some(key);
                first = false;
            }
            for _ in 0..size {
                let (record, key) = new_key(&format, Permission::Read, Some(&site_id), &name);
                records.push(record);
                keys.push(key);
            }
            remaining -= size;
            if batches.send((records, keys, master)).is_err() {
                return;
            }
        }
    });

    let mut all_keys = Vec::with_capacity(count);
    let mut master_key = None;
    let site_id = site.id.clone();
    let mut sites = vec![site];
    let mut last_report = Instant::now();
    for (records, keys, master) in received {
        let batch = ImportBatch { sites: std::mem::take(&mut sites), keys: records, ..ImportBatch::default() };
        store.import(&batch).await.map_err(|e| anyhow::anyhow!("import into {database}: {e}"))?;
        all_keys.extend(keys);
        master_key = master_key.or(master);
        if last_report.elapsed().as_secs_f64() >= 5.0 || all_keys.len() == count {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "  seeded {:>9} / {count} keys in {seconds:5.1} s ({:.0} keys/s)",
                all_keys.len(),
                all_keys.len() as f64 / seconds
            );
            last_report = Instant::now();
        }
    }
    producer.join().map_err(|_| anyhow::anyhow!("the key generator thread panicked"))?;
    anyhow::ensure!(all_keys.len() == count, "seeded {} keys, wanted {count}", all_keys.len());
    Ok(Seeded {
        database: database.to_owned(),
        keys: Arc::new(all_keys),
        site: site_id,
        master: master_key.context("the first batch holds the Master key")?,
    })
}
