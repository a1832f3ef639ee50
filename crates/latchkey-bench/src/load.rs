//! The load generator: N persistent HTTP/1.1 keep-alive connections (hyper 1.x client
//! connections, no pool in between), each a task sending requests back-to-back. Latency is
//! measured per request from just before sending to the last body byte, into an
//! HdrHistogram per connection (no shared state on the hot path), merged at the end.

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What each request is, and what counts as a correct answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// `GET /healthz`: the cost of HTTP and routing alone, the floor for everything else.
    Noop,
    /// `POST /api/v1/verify` `{"key": ...}`, expecting 200 with `"valid":true`.
    Verify,
    /// `GET /api/v1/auth` with `X-API-Key` and `X-Original-Method: GET`, expecting 204.
    Auth,
    /// The naive server's `POST /verify`, expecting 200 with `"valid":true`.
    NaiveVerify,
}

impl Scenario {
    fn request(self, host: &str, key: &str) -> Request<Full<Bytes>> {
        let builder = Request::builder().header(HOST, host);
        let result = match self {
            Scenario::Noop => builder.method(Method::GET).uri("/healthz").body(Full::new(Bytes::new())),
            Scenario::Verify | Scenario::NaiveVerify => {
                let path = if self == Scenario::Verify { "/api/v1/verify" } else { "/verify" };
                // Keys are base62 after the prefix: nothing to escape in JSON.
                let body = format!("{{\"key\":\"{key}\"}}");
                builder
                    .method(Method::POST)
                    .uri(path)
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))
            }
            Scenario::Auth => builder
                .method(Method::GET)
                .uri("/api/v1/auth")
                .header("x-api-key", key)
                .header("x-original-method", "GET")
                .body(Full::new(Bytes::new())),
        };
        result.expect("static request parts are valid")
    }

    /// The status to expect, and whether the body must say `"valid":true`: `/verify`
    /// answers 200 for an unknown key too, so the status alone would hide a broken seed.
    fn expected(self) -> (StatusCode, bool) {
        match self {
            Scenario::Noop => (StatusCode::OK, false),
            Scenario::Verify | Scenario::NaiveVerify => (StatusCode::OK, true),
            Scenario::Auth => (StatusCode::NO_CONTENT, false),
        }
    }

    fn needs_keys(self) -> bool {
        self != Scenario::Noop
    }
}

/// What a run measured.
pub struct Outcome {
    /// Requests started inside the measurement window (errors included).
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub measured: Duration,
    /// Latency in nanoseconds, successful requests only.
    pub latency: Histogram<u64>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        (self.requests - self.errors) as f64 / self.measured.as_secs_f64()
    }

    /// Adds another slice of the same scenario.
    pub fn absorb(&mut self, other: Outcome) -> Result<()> {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.measured += other.measured;
        self.latency.add(&other.latency).context("merge histograms")?;
        Ok(())
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e6
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: ~100 KB per connection, fine.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    // Small request/response pairs: without this, Nagle + delayed ACK adds ~40 ms stalls.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors surface on send.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and checks the answer. `Err` is a description for the report.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    expected: (StatusCode, bool),
) -> Result<(), String> {
    sender.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
    let response = sender.send_request(request).await.map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    // Read the whole body: the connection is only reusable once it is consumed, and the
    // server's serialisation cost belongs in the latency.
    let body = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    if status != expected.0 {
        return Err(format!("status {status}, body {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
    }
    const VALID: &[u8] = b"\"valid\":true";
    if expected.1 && !body.windows(VALID.len()).any(|w| w == VALID) {
        return Err(format!("not valid: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
    }
    Ok(())
}

/// When a connection's task stops sending.
#[derive(Clone, Copy)]
enum Plan {
    /// Until a deadline; only requests started after `measure_from` are recorded.
    Timed { measure_from: Instant, until: Instant },
    /// Each key exactly once, spread over the connections (the cache pre-warm).
    EachKeyOnce,
}

struct Tally {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

async fn drive(
    addr: SocketAddr,
    scenario: Scenario,
    keys: Arc<Vec<String>>,
    connection: usize,
    connections: usize,
    plan: Plan,
) -> Result<Tally> {
    let host = addr.to_string();
    let expected = scenario.expected();
    let mut sender = connect(addr).await?;
    let mut tally = Tally { requests: 0, errors: 0, first_error: None, latency: histogram() };
    // Each connection walks its own stride of the key list: every key is used, evenly,
    // and the tasks share nothing.
    let mut index = connection;
    loop {
        if let Plan::EachKeyOnce = plan {
            if index >= keys.len() {
                break;
            }
        }
        let key = if scenario.needs_keys() { keys[index % keys.len()].as_str() } else { "" };
        index += connections;
        let request = scenario.request(&host, key);
        let started = Instant::now();
        if let Plan::Timed { until, .. } = plan {
            if started >= until {
                break;
            }
        }
        let result = exchange(&mut sender, request, expected).await;
        let elapsed = started.elapsed();
        let recorded = match plan {
            Plan::Timed { measure_from, .. } => started >= measure_from,
            Plan::EachKeyOnce => true,
        };
        if !recorded {
            if result.is_err() {
                sender = reconnect(addr, sender).await?;
            }
            continue;
        }
        tally.requests += 1;
        match result {
            Ok(()) => tally.latency.saturating_record(elapsed.as_nanos() as u64),
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(error);
                sender = reconnect(addr, sender).await?;
            }
        }
    }
    Ok(tally)
}

/// After a failed exchange the connection may be closed; keep it if it is still usable.
async fn reconnect(addr: SocketAddr, sender: SendRequest<Full<Bytes>>) -> Result<SendRequest<Full<Bytes>>> {
    if !sender.is_closed() {
        return Ok(sender);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    connect(addr).await
}

async fn run(
    addr: SocketAddr,
    scenario: Scenario,
    keys: Arc<Vec<String>>,
    connections: usize,
    plan: Plan,
) -> Result<Outcome> {
    anyhow::ensure!(!scenario.needs_keys() || !keys.is_empty(), "no keys to present");
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|connection| tokio::spawn(drive(addr, scenario, keys.clone(), connection, connections, plan)))
        .collect();
    let mut total = Tally { requests: 0, errors: 0, first_error: None, latency: histogram() };
    for task in tasks {
        let tally = task.await.context("a load task panicked")??;
        total.requests += tally.requests;
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        total.latency.add(&tally.latency).context("merge histograms")?;
    }
    let measured = match plan {
        Plan::Timed { measure_from, until } => until.duration_since(measure_from),
        Plan::EachKeyOnce => started.elapsed(),
    };
    Ok(Outcome {
        requests: total.requests,
        errors: total.errors,
        first_error: total.first_error,
        measured,
        latency: total.latency,
    })
}

/// Runs `scenario` from now until `measure_from + duration`, measuring only from
/// `measure_from` on (what comes before is the warm-up).
pub async fn timed(
    addr: SocketAddr,
    scenario: Scenario,
    keys: Arc<Vec<String>>,
    connections: usize,
    measure_from: Instant,
    duration: Duration,
) -> Result<Outcome> {
    run(addr, scenario, keys, connections, Plan::Timed { measure_from, until: measure_from + duration }).await
}

/// Presents every key once (the pre-warm that puts every key in the server's cache).
pub async fn each_key_once(
    addr: SocketAddr,
    scenario: Scenario,
    keys: Arc<Vec<String>>,
    connections: usize,
) -> Result<Outcome> {
    run(addr, scenario, keys, connections, Plan::EachKeyOnce).await
}

/// One `GET /healthz`; `Ok(true)` when the server answered 200.
pub async fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut sender) = connect(addr).await else {
        return false;
    };
    let request = Scenario::Noop.request(&addr.to_string(), "");
    exchange(&mut sender, request, Scenario::Noop.expected()).await.is_ok()
}

/// One keep-alive connection for single calls whose answers matter one by one (the
/// propagation probe's management calls and polls), as opposed to the counted load above.
pub struct Caller {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Caller {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        Ok(Self { addr, sender: connect(addr).await? })
    }

    /// Sends `method path` (with `X-API-Key` and a JSON body when given) and returns the
    /// status and the body parsed as JSON (`null` for an empty body).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, serde_json::Value)> {
        if self.sender.is_closed() {
            self.sender = connect(self.addr).await?;
        }
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.addr.to_string());
        if let Some(key) = api_key {
            builder = builder.header("x-api-key", key);
        }
        let body = match body {
            Some(value) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        self.sender.ready().await.context("connection not ready")?;
        let response = self.sender.send_request(builder.body(Full::new(body))?).await.context("send")?;
        let status = response.status();
        let bytes = response.into_body().collect().await.context("body")?.to_bytes();
        let json = if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes)? };
        Ok((status, json))
    }

    /// `POST /api/v1/verify` for `key`: whether the server said `"valid": true`.
    pub async fn is_valid(&mut self, key: &str) -> Result<bool> {
        let (status, body) =
            self.call(Method::POST, "/api/v1/verify", None, Some(serde_json::json!({ "key": key }))).await?;
        anyhow::ensure!(status == StatusCode::OK, "verify answered {status}: {body}");
        Ok(body["valid"] == serde_json::Value::Bool(true))
    }
}
