//! Turns the measurements of one run into the printed table, the ratios against their
//! targets, and the JSON object written by `--json`.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// One scenario against one server.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// Stable name used in the JSON (`verify_1k`, `noop_1m`, ...).
    pub id: String,
    pub label: String,
    pub server: String,
    pub db_keys: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Server CPU time (user + system) per request in the measured window.
    pub server_cpu_us_per_request: f64,
    /// The part of it spent on the server's SQLite connection threads.
    pub server_sqlite_cpu_us_per_request: f64,
    /// The load generator's own CPU time per request in the measured window.
    pub client_cpu_us_per_request: f64,
    /// Share of the machine (all cores) busy with neither the server nor the load
    /// generator during the window: other programs disturbing the measurement.
    pub other_cpu_percent: f64,
    /// The server was still busy with background writes when the scenario started.
    pub started_busy: bool,
}

/// One server process of the run, and what it did outside the measured windows.
#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo {
    pub server: String,
    pub run: String,
    pub db_keys: usize,
    pub prewarmed: bool,
    pub rss_after_prewarm_mb: f64,
    pub rss_after_load_mb: f64,
    /// How long the server stayed busy after the pre-warm ended; `None` when it was still
    /// busy when the harness stopped waiting.
    pub busy_after_prewarm_s: Option<f64>,
    /// How long SIGTERM → exit took; `None` when it had to be killed.
    pub graceful_stop_s: Option<f64>,
}

pub struct Report {
    pub scenarios: Vec<Measured>,
    pub servers: Vec<ServerInfo>,
    pub rss_mb_small: f64,
    pub rss_mb_large: f64,
    pub keys_small: usize,
    pub keys_large: usize,
    pub config: Value,
}

pub struct Target {
    pub name: &'static str,
    pub value: f64,
    /// `true`: value must be at least `bound`; `false`: at most.
    pub at_least: bool,
    pub bound: f64,
}

impl Target {
    pub fn met(&self) -> bool {
        if self.at_least {
            self.value >= self.bound
        } else {
            self.value <= self.bound
        }
    }
}

pub fn human_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

impl Report {
    fn get(&self, id: &str) -> Option<&Measured> {
        self.scenarios.iter().find(|m| m.id == id)
    }

    fn ratio(&self, a: &str, b: &str) -> f64 {
        match (self.get(a), self.get(b)) {
            (Some(a), Some(b)) if b.rps > 0.0 => a.rps / b.rps,
            _ => f64::NAN,
        }
    }

    fn p99(&self, id: &str) -> f64 {
        self.get(id).map_or(f64::NAN, |m| m.p99_ms)
    }

    /// Bytes of resident memory per extra cached key between the small and large runs.
    pub fn bytes_per_cached_key(&self) -> f64 {
        (self.rss_mb_large - self.rss_mb_small) * 1e6 / (self.keys_large as f64 - self.keys_small as f64)
    }

    pub fn errors_total(&self) -> u64 {
        self.scenarios.iter().map(|m| m.errors).sum()
    }

    pub fn targets(&self) -> Vec<Target> {
        vec![
            Target {
                name: "verify_over_noop",
                value: self.ratio("verify_small", "noop_small"),
                at_least: true,
                bound: 0.85,
            },
            Target {
                name: "auth_over_noop",
                value: self.ratio("auth_small", "noop_small"),
                at_least: true,
                bound: 0.9,
            },
            Target {
                name: "auth_rotation_over_noop",
                value: self.ratio("auth_rotation", "noop_rotation"),
                at_least: true,
                bound: 0.9,
            },
            Target {
                name: "verify_p99_over_noop_p99",
                value: self.p99("verify_small") / self.p99("noop_small"),
                at_least: false,
                bound: 1.25,
            },
            Target {
                name: "keys_1m_over_1k",
                value: self.ratio("verify_large", "verify_small"),
                at_least: true,
                bound: 0.9,
            },
            Target {
                name: "verify_over_naive_sqlite",
                value: self.ratio("verify_small", "naive_verify_small"),
                at_least: true,
                bound: 2.0,
            },
            Target { name: "rss_mb_1m", value: self.rss_mb_large, at_least: false, bound: 200.0 },
        ]
    }

    pub fn print(&self) {
        println!();
        println!(
            "{:<40} {:<8} {:>5} {:>9} {:>7} {:>7} {:>7} {:>6} {:>10} {:>10} {:>11} {:>7}",
            "scenario",
            "server",
            "keys",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "srv µs/req",
            "of it SQL",
            "load µs/req",
            "other %"
        );
        println!("{}", "-".repeat(138));
        for m in &self.scenarios {
            println!(
                "{:<40} {:<8} {:>5} {:>9.0} {:>7.3} {:>7.3} {:>7.2} {:>6} {:>10.1} {:>10.1} {:>11.1} {:>7.1}",
                if m.started_busy { format!("{} *", m.label) } else { m.label.clone() },
                m.server,
                human_count(m.db_keys),
                m.rps,
                m.p50_ms,
                m.p99_ms,
                m.max_ms,
                m.errors,
                m.server_cpu_us_per_request,
                m.server_sqlite_cpu_us_per_request,
                m.client_cpu_us_per_request,
                m.other_cpu_percent
            );
        }
        if self.scenarios.iter().any(|m| m.started_busy) {
            println!(
                "* started while the server was still busy writing last-used times / usage counts from earlier load"
            );
        }
        let disturbed: Vec<&str> =
            self.scenarios.iter().filter(|m| m.other_cpu_percent > 5.0).map(|m| m.id.as_str()).collect();
        if !disturbed.is_empty() {
            println!();
            println!(
                "WARNING: other programs used more than 5% of the machine during {}; those figures are disturbed, run again on a quiet machine",
                disturbed.join(", ")
            );
        }
        println!();
        println!(
            "{:<34} {:>5} {:>13} {:>13} {:>20} {:>16}",
            "server process", "keys", "RSS warm MB", "RSS end MB", "busy after warm s", "graceful stop s"
        );
        for info in &self.servers {
            println!(
                "{:<34} {:>5} {:>13.1} {:>13.1} {:>20} {:>16}",
                format!("{} ({})", info.server, info.run),
                human_count(info.db_keys),
                info.rss_after_prewarm_mb,
                info.rss_after_load_mb,
                match (info.busy_after_prewarm_s, info.prewarmed) {
                    (Some(s), _) => format!("{s:.1}"),
                    (None, true) => "still busy".to_owned(),
                    (None, false) => "-".to_owned(),
                },
                info.graceful_stop_s.map_or("KILLED".to_owned(), |s| format!("{s:.1}")),
            );
        }
        println!("memory per cached key: {:.0} bytes", self.bytes_per_cached_key());
        println!();
        println!("{:<28} {:>10} {:>12}  result", "ratio", "value", "target");
        for target in self.targets() {
            let bound = format!("{} {}", if target.at_least { ">=" } else { "<=" }, target.bound);
            println!(
                "{:<28} {:>10.3} {:>12}  {}",
                target.name,
                target.value,
                bound,
                if target.met() { "met" } else { "MISSED" }
            );
        }
        let errors = self.errors_total();
        if errors > 0 {
            println!();
            println!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            println!("!!! {errors} REQUESTS FAILED: these figures are NOT valid. First errors:");
            for m in self.scenarios.iter().filter(|m| m.errors > 0) {
                println!(
                    "!!!   {} ({}): {} errors, e.g. {}",
                    m.id,
                    m.label,
                    m.errors,
                    m.first_error.as_deref().unwrap_or("?")
                );
            }
            println!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        }
    }

    pub fn json(&self) -> Value {
        let mut out = Map::new();
        for target in self.targets() {
            out.insert(target.name.to_owned(), json_number(target.value));
        }
        out.insert("verify_p99_ms".into(), json_number(self.p99("verify_small")));
        out.insert("noop_p99_ms".into(), json_number(self.p99("noop_small")));
        out.insert("auth_p99_ms".into(), json_number(self.p99("auth_small")));
        out.insert("rss_mb_1k".into(), json_number(self.rss_mb_small));
        // Not targets, context: the uncached path against the naive server on the same file.
        out.insert(
            "verify_1m_default_staleness_over_naive_1m".into(),
            json_number(self.ratio("verify_large_default_staleness", "naive_verify_large")),
        );
        out.insert("naive_1m_over_1k".into(), json_number(self.ratio("naive_verify_large", "naive_verify_small")));
        out.insert("bytes_per_cached_key".into(), json_number(self.bytes_per_cached_key()));
        out.insert("errors_total".into(), json!(self.errors_total()));
        let targets: Vec<Value> = self
            .targets()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "value": json_number(t.value),
                    "target": format!("{} {}", if t.at_least { ">=" } else { "<=" }, t.bound),
                    "met": t.met(),
                })
            })
            .collect();
        out.insert("all_targets_met".into(), json!(self.targets().iter().all(Target::met)));
        out.insert("targets".into(), Value::Array(targets));
        let scenarios: Map<String, Value> = self
            .scenarios
            .iter()
            .map(|m| (m.id.clone(), serde_json::to_value(m).expect("plain data serialises")))
            .collect();
        out.insert("scenarios".into(), Value::Object(scenarios));
        out.insert("servers".into(), serde_json::to_value(&self.servers).expect("plain data serialises"));
        out.insert("config".into(), self.config.clone());
        Value::Object(out)
    }
}

/// JSON has no NaN: a ratio that could not be computed is `null`.
fn json_number(value: f64) -> Value {
    if value.is_finite() {
        json!((value * 1e4).round() / 1e4)
    } else {
        Value::Null
    }
}
