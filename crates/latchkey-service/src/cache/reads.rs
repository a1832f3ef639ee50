//! The cache's reads of the store, batched: misses that arrive while reads are in flight
//! wait together and are read with one `find_keys_by_hashes` call when a read finishes.
//!
//! Why: a profile of the cold path (a million keys, none cached) put about a third of the
//! server's time in waking threads, not in SQLite. Each read is a hand-off to a SQLite
//! reader thread and back (sqlx runs every connection on its own thread), and on two
//! cores each hand-off is a context switch. Reading the misses that queued up meanwhile
//! in one statement pays that once per batch. An idle server is not slowed: a miss that
//! finds a free read slot is read at once, alone.

use latchkey_core::{KeyHash, KeyRecord};
use latchkey_store::{SharedStore, StoreError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Reads in flight at once; misses beyond wait for the next batch. Half of SQLite's eight
/// reader connections, leaving the others to listings, and PostgreSQL's pool room too.
const READS_IN_FLIGHT: usize = 4;
/// The most hashes in one read: SQLite prepares one statement per list length.
const MAX_BATCH: usize = 64;

type Answer = oneshot::Sender<Result<Option<KeyRecord>, StoreError>>;

pub(super) struct BatchedReads {
    store: SharedStore,
    queue: Mutex<Queue>,
    /// Store calls made, each for one batch.
    batches: AtomicU64,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(KeyHash, Answer)>,
    in_flight: usize,
}

impl Queue {
    fn next_batch(&mut self) -> Vec<(KeyHash, Answer)> {
        let rest = self.waiting.split_off(self.waiting.len().min(MAX_BATCH));
        std::mem::replace(&mut self.waiting, rest)
    }
}

/// Gives the read slot back if a read panics, so the slots cannot leak away.
struct SlotGuard<'a>(&'a Mutex<Queue>);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

impl BatchedReads {
    pub(super) fn new(store: SharedStore) -> Arc<Self> {
        Arc::new(Self { store, queue: Mutex::new(Queue::default()), batches: AtomicU64::new(0) })
    }

    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// The key with `hash` as the store has it now (read after this call began).
    pub(super) async fn find(self: &Arc<Self>, hash: KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let (answer, answered) = oneshot::channel();
        let batch = {
            let mut queue = self.queue.lock();
            queue.waiting.push((hash, answer));
            (queue.in_flight < READS_IN_FLIGHT).then(|| {
                queue.in_flight += 1;
                queue.next_batch()
            })
        };
        // On a task of its own: a caller that goes away (its client hung up) must not
        // take the batch, and the others' answers, with it.
        if let Some(batch) = batch {
            tokio::spawn(self.clone().read_until_idle(batch));
        }
        answered.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the store read was abandoned".into())))
    }

    /// Reads `batch`, then whatever queued up meanwhile, until nothing waits. The slot is
    /// given back under the same lock that saw the queue empty, so a miss that queued
    /// behind a full set of reads is always picked up by one of them.
    async fn read_until_idle(self: Arc<Self>, mut batch: Vec<(KeyHash, Answer)>) {
        let slot = SlotGuard(&self.queue);
        loop {
            self.read(batch).await;
            let mut queue = self.queue.lock();
            if queue.waiting.is_empty() {
                queue.in_flight -= 1;
                std::mem::forget(slot);
                return;
            }
            batch = queue.next_batch();
        }
    }

    async fn read(&self, batch: Vec<(KeyHash, Answer)>) {
        let hashes: Vec<KeyHash> = batch.iter().map(|(hash, _)| *hash).collect();
        self.batches.fetch_add(1, Ordering::Relaxed);
        match self.store.find_keys_by_hashes(&hashes).await {
            Ok(records) => {
                let by_hash: HashMap<KeyHash, KeyRecord> = records.into_iter().map(|r| (r.hash, r)).collect();
                // `get`, not `remove`: with the cache bypassed one hash may wait twice.
                for (hash, answer) in batch {
                    let _ = answer.send(Ok(by_hash.get(&hash).cloned()));
                }
            }
            Err(error) => {
                for (_, answer) in batch {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }
}
