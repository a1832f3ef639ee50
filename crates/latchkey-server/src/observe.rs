//! What operators see of the server: one log line per request (method, route, status,
//! latency, request id), the `X-Request-Id` that ties a client's report to that line, and
//! the Prometheus metrics at `GET /metrics`. The service counts its own verdicts and store
//! queries (`latchkey_service::stats`); this module adds the HTTP side and writes both
//! out in the exposition format.

use crate::state::AppState;
use arc_swap::ArcSwap;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use latchkey_service::stats::{LatencyHistogram, ServiceStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request durations by route template and status class (`1xx`…`5xx`). Recording takes
/// no lock and allocates nothing once a route has been seen: the table is read through an
/// `ArcSwap` (no shared write on a read) and replaced whole when a new route appears, which
/// happens once per route template.
#[derive(Default)]
pub struct HttpStats {
    routes: ArcSwap<HashMap<Box<str>, Arc<RouteStats>>>,
}

/// One route template's histograms, one per status class; index 0 holds anything outside
/// 1xx-5xx.
pub struct RouteStats {
    template: Box<str>,
    by_status_class: [LatencyHistogram; 6],
}

impl RouteStats {
    fn record(&self, status: u16, took: Duration) {
        self.by_status_class[usize::from(status / 100).min(5)].record(took);
    }
}

impl HttpStats {
    /// The route's entry, made the first time the route is seen.
    fn route(&self, template: &str) -> Arc<RouteStats> {
        if let Some(route) = self.routes.load().get(template) {
            return route.clone();
        }
        let mut made = None;
        self.routes.rcu(|routes| {
            let mut routes = HashMap::clone(routes);
            let entry = routes.entry(template.into()).or_insert_with(|| {
                Arc::new(RouteStats { template: template.into(), by_status_class: Default::default() })
            });
            made = Some(entry.clone());
            routes
        });
        made.expect("rcu runs its closure at least once")
    }
}

/// Logs and times every request, and gives it an id: the client's `X-Request-Id` when it
/// is a plausible id (so a proxy's id carries through), else a new one. The id is sent
/// back on the answer.
///
/// A hand-written layer rather than `axum::middleware::from_fn`: that one boxes the inner
/// service and the future and splits and rebuilds the request on every call, which
/// measured as most of this layer's cost.
#[derive(Clone)]
pub struct ObserveLayer {
    stats: Arc<HttpStats>,
}

impl ObserveLayer {
    pub fn new(stats: Arc<HttpStats>) -> Self {
        Self { stats }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, stats: self.stats.clone() }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    stats: Arc<HttpStats>,
}

impl<S: tower::Service<Request, Response = Response>> tower::Service<Request> for Observe<S> {
    type Response = Response;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = match request.headers().get(&REQUEST_ID).filter(|value| is_plausible_id(value)) {
            Some(id) => id.clone(),
            None => new_request_id(),
        };
        // The template (`/api/v1/keys/{id}`), never the path itself: ids stay out of metric
        // labels, whose number must stay bounded.
        let template = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        let route = self.stats.route(template);
        let method = request.method().clone();
        Observed { inner: self.inner.call(request), started, request_id: Some(request_id), method, route }
    }
}

pin_project_lite::pin_project! {
    /// The inner answer, then the log line, the timing and the request id.
    pub struct Observed<F> {
        #[pin]
        inner: F,
        started: Instant,
        request_id: Option<HeaderValue>,
        method: Method,
        route: Arc<RouteStats>,
    }
}

impl<F, E> Future for Observed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(response)) => response,
        };
        let took = this.started.elapsed();
        let status = response.status().as_u16();
        this.route.record(status, took);
        let request_id = this.request_id.take().expect("an answer is made once");
        tracing::info!(
            target: "latchkey::access",
            method = %this.method,
            route = %this.route.template,
            status,
            latency_us = took.as_micros() as u64,
            request_id = request_id.to_str().unwrap_or_default(),
        );
        response.headers_mut().insert(REQUEST_ID.clone(), request_id);
        Poll::Ready(Ok(response))
    }
}

/// Up to 128 characters of letters, digits and `-_.:`: what proxies and tracing systems
/// send, and nothing that could forge a second log field or line.
fn is_plausible_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Sixteen hex digits: a random start per thread, then a counter. Unique within the
/// process and across restarts (64 random bits per thread), cheaper than a fresh random
/// id per request, and with no counter shared between threads.
fn new_request_id() -> HeaderValue {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = std::cell::Cell::new(latchkey_core::Ulid::new().random() as u64);
    }
    let id = NEXT.with(|next| {
        let id = next.get();
        next.set(id.wrapping_add(1));
        id
    });
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&digits).expect("hex digits are a valid header value")
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
        let mut routes: Vec<_> = self.http.routes.load().values().cloned().collect();
        routes.sort_by(|a, b| a.template.cmp(&b.template));
        for route_stats in routes {
            let route = &route_stats.template;
            for (class, histogram) in route_stats.by_status_class.iter().enumerate() {
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
