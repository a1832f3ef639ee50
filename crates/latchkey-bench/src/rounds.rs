//! One server's turn in the benchmark: start it, pre-warm its cache, run its scenarios in
//! alternating rounds while sampling CPU time, and stop it gracefully.

use crate::load::{self, Outcome, Scenario};
use crate::report::{human_count, Measured, ServerInfo};
use crate::seed::Seeded;
use crate::server::{self, ServerProcess};
use crate::{cores, RunArgs};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the latchkey or naive server is started with, and what to run against it.
pub struct ServerRun<'a> {
    pub name: &'static str,
    /// Suffix of the scenario ids (`small`, `large`, `large_default_staleness`).
    pub suffix: &'static str,
    pub db: &'a Seeded,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub prewarm: bool,
    pub scenarios: &'static [Scenario],
}

pub struct ServerResults {
    pub measured: Vec<Measured>,
    pub info: ServerInfo,
}

pub async fn bench_server(run: &ServerRun<'_>, args: &RunArgs) -> Result<ServerResults> {
    let addr = server::free_address()?;
    let mut child_args = run.args.clone();
    child_args.extend(["--listen".to_owned(), addr.to_string()]);
    let title = format!("{} on {} keys ({})", run.name, human_count(run.db.keys.len()), run.suffix);
    let mut server = ServerProcess::spawn(run.name, &run.program, &child_args, addr)?;
    // The pid, for attaching `perf record -p` to a run by hand.
    println!("\nstarted {title} at {addr}, pid {}", server.pid());
    server.wait_healthy(Duration::from_secs(60)).await?;

    let mut busy_after_prewarm_s = None;
    if run.prewarm {
        let started = Instant::now();
        let outcome = load::each_key_once(addr, Scenario::Verify, run.db.keys.clone(), args.connections).await?;
        println!(
            "  pre-warm: verified {} keys in {:.1} s ({:.0}/s){}",
            outcome.requests,
            started.elapsed().as_secs_f64(),
            outcome.rps(),
            if outcome.errors > 0 {
                format!(" — {} ERRORS, e.g. {}", outcome.errors, outcome.first_error.as_deref().unwrap_or("?"))
            } else {
                String::new()
            }
        );
        anyhow::ensure!(outcome.errors == 0, "the pre-warm failed; the seed or the server is broken");
        let (busy, settled) = server.settle(SETTLE_AFTER_PREWARM).await?;
        if settled {
            println!("  server idle again {:.1} s after the pre-warm", busy.as_secs_f64());
        } else {
            println!(
                "  server STILL BUSY {:.0} s after the pre-warm (writing last-used times and usage counts); measuring anyway",
                busy.as_secs_f64()
            );
        }
        busy_after_prewarm_s = Some(busy.as_secs_f64()).filter(|_| settled);
    }
    let rss_after_prewarm_mb = server.rss_mb()?;
    println!("  RSS {rss_after_prewarm_mb:.1} MB");

    // The scenarios take turns in `--rounds` slices (noop, verify, auth, noop, verify,
    // auth, ...), so a slow drift of the shared machine hits them all alike instead of
    // whichever ran at the wrong moment. Each slice has its share of the warm-up.
    let rounds = args.rounds.max(1);
    let slice = Duration::from_secs_f64(args.duration / rounds as f64);
    let warmup = Duration::from_secs_f64(args.warmup / rounds as f64);
    let mut totals: Vec<Option<(Outcome, CpuWindow)>> = run.scenarios.iter().map(|_| None).collect();
    let mut started_busy = vec![false; run.scenarios.len()];
    for _ in 0..rounds {
        for (i, &scenario) in run.scenarios.iter().enumerate() {
            // Each slice starts on a quiet server if it gets quiet soon; a server whose
            // background writes lag behind its traffic is measured as it is, and marked.
            let (_, settled) = server.settle(SETTLE_BETWEEN).await?;
            started_busy[i] |= !settled;
            let (outcome, cpu) =
                measure(&server, scenario, run.db.keys.clone(), args.connections, warmup, slice).await?;
            match &mut totals[i] {
                Some((total, total_cpu)) => {
                    total.absorb(outcome)?;
                    total_cpu.absorb(&cpu);
                }
                empty => *empty = Some((outcome, cpu)),
            }
        }
    }

    let mut measured = Vec::new();
    for ((&scenario, total), started_busy) in run.scenarios.iter().zip(totals).zip(started_busy) {
        let (outcome, cpu) = total.context("every scenario ran at least once")?;
        let requests = outcome.requests.max(1) as f64;
        let (id, label) = describe(scenario, run.suffix);
        let m = Measured {
            id,
            label,
            server: run.name.to_owned(),
            db_keys: run.db.keys.len(),
            rps: outcome.rps(),
            p50_ms: outcome.quantile_ms(0.50),
            p99_ms: outcome.quantile_ms(0.99),
            max_ms: outcome.latency.max() as f64 / 1e6,
            requests: outcome.requests,
            errors: outcome.errors,
            first_error: outcome.first_error,
            server_cpu_us_per_request: cpu.server.as_secs_f64() * 1e6 / requests,
            server_sqlite_cpu_us_per_request: cpu.server_sqlite.as_secs_f64() * 1e6 / requests,
            client_cpu_us_per_request: cpu.client.as_secs_f64() * 1e6 / requests,
            other_cpu_percent: 100.0 * cpu.other.as_secs_f64() / (outcome.measured.as_secs_f64() * cores() as f64),
            started_busy,
        };
        println!(
            "  {:<40} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}  other CPU {:.0}%",
            m.label, m.rps, m.p50_ms, m.p99_ms, m.errors, m.other_cpu_percent
        );
        measured.push(m);
    }
    let rss_after_load_mb = server.rss_mb()?;
    let stop = server.stop(STOP_LIMIT)?;
    match stop {
        Some(took) => println!("  stopped gracefully in {:.1} s", took.as_secs_f64()),
        None => println!("  NOT stopped within {} s of SIGTERM; killed", STOP_LIMIT.as_secs()),
    }
    let info = ServerInfo {
        server: run.name.to_owned(),
        run: run.suffix.to_owned(),
        db_keys: run.db.keys.len(),
        prewarmed: run.prewarm,
        rss_after_prewarm_mb,
        rss_after_load_mb,
        busy_after_prewarm_s,
        graceful_stop_s: stop.map(|d| d.as_secs_f64()),
    };
    Ok(ServerResults { measured, info })
}

/// The longest we wait for a server to go idle after its pre-warm, and before each
/// scenario. Bounded so that the default run stays within about five minutes.
const SETTLE_AFTER_PREWARM: Duration = Duration::from_secs(10);
const SETTLE_BETWEEN: Duration = Duration::from_secs(3);
/// The longest a graceful stop may take before the server is killed.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);

/// CPU time spent during a measured window.
struct CpuWindow {
    server: Duration,
    /// The part of `server` spent on SQLite's connection threads.
    server_sqlite: Duration,
    client: Duration,
    /// Whole-machine busy time minus the two above: other programs, and kernel work not
    /// charged to either process. Much of it means the figures are disturbed.
    other: Duration,
}

impl CpuWindow {
    fn absorb(&mut self, other: &CpuWindow) {
        self.server += other.server;
        self.server_sqlite += other.server_sqlite;
        self.client += other.client;
        self.other += other.other;
    }
}

/// Runs one timed slice of a scenario and samples the CPU time of the server, of this
/// process and of the whole machine over exactly its measured window.
async fn measure(
    server: &ServerProcess,
    scenario: Scenario,
    keys: Arc<Vec<String>>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<(Outcome, CpuWindow)> {
    let measure_from = Instant::now() + warmup;
    let pid = server.pid();
    let server_stat = format!("/proc/{pid}/stat");
    let sample = move || -> Result<[Duration; 4]> {
        Ok([
            server::process_cpu_time(&server_stat)?,
            server::process_cpu_time("/proc/self/stat")?,
            server::machine_busy_time()?,
            server::threads_cpu_time(pid, "sqlx-sqlite")?,
        ])
    };
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = sample()?;
        tokio::time::sleep_until((measure_from + duration).into()).await;
        let after = sample()?;
        let [server, client, machine, server_sqlite] = [0, 1, 2, 3].map(|i| after[i].saturating_sub(before[i]));
        anyhow::Ok(CpuWindow { server, server_sqlite, client, other: machine.saturating_sub(server + client) })
    });
    let outcome = load::timed(server.addr, scenario, keys, connections, measure_from, duration).await?;
    let cpu = sampler.await.context("CPU sampler panicked")??;
    Ok((outcome, cpu))
}

fn describe(scenario: Scenario, suffix: &str) -> (String, String) {
    let (id, label) = match scenario {
        Scenario::Noop => ("noop", "GET /healthz (no-op)"),
        Scenario::Verify => ("verify", "POST /api/v1/verify"),
        Scenario::Auth => ("auth", "GET /api/v1/auth (forward-auth)"),
        Scenario::NaiveVerify => ("naive_verify", "POST /verify (SHA-256 + SELECT)"),
    };
    let label =
        if suffix == "large_default_staleness" { format!("{label} (cold, defaults)") } else { label.to_owned() };
    (format!("{id}_{suffix}"), label)
}
