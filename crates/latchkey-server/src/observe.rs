//! What operators see of the server: one log line per request (method, route, status,
//! latency, request id), the `X-Request-Id` that ties a client's report to that line, and
//! the Prometheus metrics at `GET /metrics`. The service counts its own verdicts and store
//! queries (`latchkey_service::stats`); this module adds the HTTP side and writes both
//! out in the exposition format.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use latchkey_service::stats::{LatencyHistogram, ServiceStats};
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request durations by route template and status class (`1xx`…`5xx`). Once a route has
/// been seen, recording takes a shared read lock, a lookup by `&str` and two atomic adds:
/// no allocation on the request path.
#[derive(Default)]
pub struct HttpStats {
    durations: RwLock<HashMap<Box<str>, Arc<ByStatusClass>>>,
}

/// One histogram per status class; index 0 holds anything outside 1xx-5xx.
type ByStatusClass = [LatencyHistogram; 6];

impl HttpStats {
    fn record(&self, route: &str, status: u16, took: std::time::Duration) {
        let class = usize::from(status / 100).min(5);
        if let Some(by_class) = self.durations.read().get(route) {
            return by_class[class].record(took);
        }
        let by_class = self.durations.write().entry(route.into()).or_default().clone();
        by_class[class].record(took);
    }
}

/// Logs and times every request, and gives it an id: the client's `X-Request-Id` when it
/// is a plausible id (so a proxy's id carries through), else a new one. The id is sent
/// back on the answer.
///
/// It takes only the statistics as its state: cloning the whole `AppState` (a dozen `Arc`s)
/// on every request is measurable on the hot path.
pub async fn observe_requests(State(http_stats): State<Arc<HttpStats>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = match request.headers().get(&REQUEST_ID).filter(|value| is_plausible_id(value)) {
        Some(id) => id.clone(),
        // Nothing downstream reads it: it goes into the log line and the answer only.
        None => new_request_id(),
    };
    let method = request.method().clone();
    // The template (`/api/v1/keys/{id}`), never the path itself: ids stay out of metric
    // labels, whose number must stay bounded.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let mut response = next.run(request).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    http_stats.record(route, status, took);
    tracing::info!(
        target: "latchkey::access",
        method = %method,
        route = %route,
        status,
        latency_us = took.as_micros() as u64,
        request_id = request_id.to_str().unwrap_or_default(),
    );
    response.headers_mut().insert(REQUEST_ID.clone(), request_id);
    response
}

/// Up to 128 characters of letters, digits and `-_.:`: what proxies and tracing systems
/// send, and nothing that could forge a second log field or line.
fn is_plausible_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A random start and a counter: unique within the process and across restarts, and
/// cheaper than a fresh random id on every request.
fn new_request_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| latchkey_core::Ulid::new().random() as u64);
    let id = format!("{:016x}", start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)));
    HeaderValue::from_str(&id).expect("hex digits are a valid header value")
}

/// `GET /metrics`: the Prometheus exposition (OpenMetrics text).
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        service: state.service.stats(),
        http: state.http_stats.clone(),
        cache_entries: state.service.cached_keys(),
        cache_misses: state.service.store_reads(),
        redis_errors: state.service.redis_errors(),
        now_ms: state.clock.now().timestamp_millis(),
    }));
    let mut body = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        tracing::error!(%error, "could not write the metrics");
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

/// Everything, read once at scrape time.
struct Snapshot {
    service: Arc<ServiceStats>,
    http: Arc<HttpStats>,
    cache_entries: usize,
    cache_misses: u64,
    redis_errors: Option<u64>,
    now_ms: i64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut verifications = encoder.encode_descriptor(
            "latchkey_verifications",
            "Keys checked on any path (X-API-Key, /verify, /auth, dashboard), by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in self.service.verifications() {
            ConstCounter::new(count).encode(verifications.encode_family(&[("result", outcome)])?)?;
        }
        let throttled = self.service.verifications().find(|(outcome, _)| *outcome == "throttled").map_or(0, |(_, n)| n);
        let lookups = self.service.cache_lookups();
        let counters = [
            (
                "latchkey_cache_hits",
                "Verifications answered from memory (known or known-unknown keys)",
                lookups.saturating_sub(self.cache_misses),
            ),
            ("latchkey_cache_misses", "Verifications that read the store", self.cache_misses),
            ("latchkey_throttled", "Verifications refused because the address failed too often", throttled),
        ];
        let redis_errors = self
            .redis_errors
            .map(|errors| ("latchkey_redis_errors", "Calls to Redis that failed (rate limits, throttling)", errors));
        for (name, help, value) in counters.into_iter().chain(redis_errors) {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let gauges = [
            ("latchkey_cache_entries", "Keys held in the verification cache", self.cache_entries as f64),
            (
                "latchkey_flush_lag_seconds",
                "Time since last-used times and usage counts were last all written",
                self.service.bookkeeping_lag(self.now_ms).as_secs_f64(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let mut store = encoder.encode_descriptor(
            "latchkey_store_query_duration_seconds",
            "Store queries made by the verification path and its bookkeeping",
            None,
            MetricType::Histogram,
        )?;
        for (operation, histogram) in self.service.store_queries() {
            let (sum, count, buckets) = histogram.snapshot();
            store
                .encode_family(&[("operation", operation)])?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        let mut http = encoder.encode_descriptor(
            "latchkey_http_request_duration_seconds",
            "HTTP requests by route template and status class",
            None,
            MetricType::Histogram,
        )?;
        let mut routes: Vec<_> = self.http.durations.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, by_class) in routes {
            for (class, histogram) in by_class.iter().enumerate() {
                let (sum, count, buckets) = histogram.snapshot();
                if count == 0 {
                    continue;
                }
                let status = if class == 0 { "other".to_owned() } else { format!("{class}xx") };
                let labels = [("route", route.as_ref()), ("status", status.as_str())];
                http.encode_family(&labels)?.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }
}
