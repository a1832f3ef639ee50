//! What the service counts about itself for operators: verdicts by outcome, cache hits,
//! throttling, how long store queries take, and how far behind the bookkeeping writes are.
//! Plain atomics, bumped on the verification path with relaxed adds and read at scrape
//! time; the server turns them into Prometheus text. No exporter lives here.
//!
//! Every counter is sharded by thread ([`Sharded`]): one atomic that both cores add to on
//! every request moves its cache line between them each time, which measured as a real
//! part of a request's cost; each thread adding to a line of its own does not.

use latchkey_core::Refusal;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The outcomes a verification is counted under: `valid`, or the refusal's code, with
/// failure throttling apart from a key's own rate limit (they share the code
/// `rate_limited` in answers, but an operator wants to tell an attack from a busy client).
pub const OUTCOMES: [&str; 12] = [
    "valid",
    "missing_api_key",
    "invalid_api_key",
    "key_blocked",
    "key_expired",
    "ip_not_allowed",
    "insufficient_permission",
    "missing_scope",
    "wrong_site",
    "rate_limited",
    "usage_exceeded",
    "throttled",
];

fn outcome_index(refusal: Option<Refusal>) -> usize {
    match refusal {
        None => 0,
        Some(Refusal::MissingKey) => 1,
        Some(Refusal::InvalidKey) => 2,
        Some(Refusal::Blocked) => 3,
        Some(Refusal::Expired) => 4,
        Some(Refusal::IpNotAllowed) => 5,
        Some(Refusal::InsufficientPermission) => 6,
        Some(Refusal::MissingScope) => 7,
        Some(Refusal::WrongSite) => 8,
        Some(Refusal::RateLimited { .. }) => 9,
        Some(Refusal::UsageExceeded) => 10,
        Some(Refusal::Throttled { .. }) => 11,
    }
}

/// The store calls the verification path makes, timed apart.
pub const STORE_QUERIES: [&str; 4] = ["find_key_by_hash", "spend_credits", "record_last_used", "record_usage"];

#[derive(Clone, Copy)]
pub(crate) enum StoreQuery {
    FindKeyByHash = 0,
    SpendCredits = 1,
    RecordLastUsed = 2,
    RecordUsage = 3,
}

/// Shards per counter: at least the runtime's worker threads on the machines we target;
/// more threads share shards, which is still correct, only slower.
const SHARDS: usize = 4;

/// One cache line (two on CPUs that fetch lines in pairs) per shard.
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// `N` counters, one copy per shard; a thread adds to its own shard, a reader sums them.
pub struct Sharded<const N: usize> {
    shards: [Padded<[AtomicU64; N]>; SHARDS],
}

impl<const N: usize> Default for Sharded<N> {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Padded(std::array::from_fn(|_| AtomicU64::new(0)))) }
    }
}

/// This thread's shard: threads take shards in turn as they first count something.
fn shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

impl<const N: usize> Sharded<N> {
    pub fn add(&self, counter: usize, amount: u64) {
        self.shards[shard()].0[counter].fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self, counter: usize) -> u64 {
        self.shards.iter().map(|shard| shard.0[counter].load(Ordering::Relaxed)).sum()
    }
}

#[derive(Default)]
pub struct ServiceStats {
    verifications: Sharded<{ OUTCOMES.len() }>,
    cache_lookups: Sharded<1>,
    store_queries: [LatencyHistogram; STORE_QUERIES.len()],
    /// When the last-used times and usage counts were last written in full (Unix ms).
    bookkeeping_written_ms: AtomicI64,
}

impl ServiceStats {
    pub(crate) fn new(now_ms: i64) -> Self {
        let stats = Self::default();
        stats.bookkeeping_written_ms.store(now_ms, Ordering::Relaxed);
        stats
    }

    pub(crate) fn count_verdict(&self, refusal: Option<Refusal>) {
        self.verifications.add(outcome_index(refusal), 1);
    }

    pub(crate) fn count_cache_lookup(&self) {
        self.cache_lookups.add(0, 1);
    }

    pub(crate) fn time_store_query(&self, query: StoreQuery, took: Duration) {
        self.store_queries[query as usize].record(took);
    }

    pub(crate) fn bookkeeping_written(&self, now_ms: i64) {
        self.bookkeeping_written_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Each outcome's name and how many verifications ended so.
    pub fn verifications(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        OUTCOMES.iter().enumerate().map(|(index, name)| (*name, self.verifications.get(index)))
    }

    pub fn cache_lookups(&self) -> u64 {
        self.cache_lookups.get(0)
    }

    pub fn store_queries(&self) -> impl Iterator<Item = (&'static str, &LatencyHistogram)> {
        STORE_QUERIES.iter().copied().zip(&self.store_queries)
    }

    /// How long ago the last-used times and usage counts were last all written: what
    /// `last_used_at` may lag behind the truth by, at most (plus one flush interval).
    pub fn bookkeeping_lag(&self, now_ms: i64) -> Duration {
        let written = self.bookkeeping_written_ms.load(Ordering::Relaxed);
        Duration::from_millis(now_ms.saturating_sub(written).max(0) as u64)
    }
}

/// The upper bounds of the latency buckets, in seconds: 50 µs to 10 s, about ×2.5 apart,
/// so both a cache-speed answer and a stalled database land in a bucket of their own.
pub const LATENCY_BUCKETS: [f64; 12] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0, 10.0];

/// A Prometheus-style histogram made of sharded atomics: recording is two relaxed adds on
/// this thread's shard, with no lock, so the hot path can afford one per request.
#[derive(Default)]
pub struct LatencyHistogram {
    /// Observations per bucket, not cumulative; the last slot is above every bound; then
    /// the sum of the observations in nanoseconds.
    counters: Sharded<{ LATENCY_BUCKETS.len() + 2 }>,
}

const SUM_NANOS: usize = LATENCY_BUCKETS.len() + 1;

impl LatencyHistogram {
    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(LATENCY_BUCKETS.len());
        self.counters.add(bucket, 1);
        self.counters.add(SUM_NANOS, took.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// The sum in seconds, the count, and the count in each bucket by its upper bound (the
    /// last is `+Inf`; not cumulative, the exposition's encoder adds them up).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        // `+Inf` is written as `f64::MAX`, the exposition encoder's convention.
        let bounds = LATENCY_BUCKETS.iter().chain([&f64::MAX]);
        let buckets: Vec<(f64, u64)> =
            bounds.enumerate().map(|(bucket, bound)| (*bound, self.counters.get(bucket))).collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        (self.counters.get(SUM_NANOS) as f64 / 1e9, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_an_outcome_of_its_own_and_valid_comes_first() {
        let mut seen: Vec<usize> = Refusal::EVERY_KIND.iter().map(|r| outcome_index(Some(*r))).collect();
        seen.push(outcome_index(None));
        seen.sort();
        assert_eq!(seen, (0..OUTCOMES.len()).collect::<Vec<_>>());
        assert_eq!(OUTCOMES[outcome_index(Some(Refusal::Blocked))], Refusal::Blocked.code());
    }

    #[test]
    fn counts_made_on_many_threads_add_up_across_their_shards() {
        let stats = std::sync::Arc::new(ServiceStats::default());
        let threads: Vec<_> = (0..2 * SHARDS)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| stats.count_verdict(Some(Refusal::Blocked))))
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        let blocked = stats.verifications().find(|(outcome, _)| *outcome == "key_blocked").unwrap().1;
        assert_eq!(blocked, 2000 * SHARDS as u64);
        assert_eq!(stats.verifications().map(|(_, n)| n).sum::<u64>(), blocked, "nothing else counted");
    }

    #[test]
    fn a_histogram_counts_each_observation_in_the_first_bucket_that_holds_it() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_micros(30));
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(60));
        let (sum, count, buckets) = histogram.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.00303).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.000_05, 1));
        assert_eq!(buckets[5], (0.002_5, 0));
        assert_eq!(buckets[6], (0.005, 1));
        assert_eq!(buckets[12], (f64::MAX, 1));
    }
}
