//! `latchkey-bench`: the end-to-end benchmark of the verification path. It seeds SQLite
//! databases, runs the release `latchkey serve` (and a naive hand-rolled verifier) as
//! child processes, loads them with an in-process hyper client, and prints one report
//! with the ratios that docs/PERFORMANCE.md sets targets for (`--json` writes it too).
//!
//! Usage: `cargo run --release -p latchkey-bench -- [--json PATH] [--duration SECS]
//! [--connections N] [--keys-large N]`. The same binary also serves the naive baseline
//! (`latchkey-bench naive-server`), so both servers are separate processes.

mod load;
mod naive;
mod postgres;
mod propagation;
mod report;
mod seed;
mod server;
mod soak;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use load::{Outcome, Scenario};
use report::{human_count, Measured, Report, ServerInfo};
use seed::Seeded;
use serde_json::json;
use server::ServerProcess;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "latchkey-bench",
    about = "End-to-end benchmark of Latchkey's verification path",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// The naive baseline server (SHA-256 + one SQLite query per request); the harness
    /// starts it itself.
    NaiveServer(naive::NaiveArgs),
    /// A long run of mixed traffic on a million keys: throughput, p99, errors and RSS each
    /// minute (`scripts/soak`).
    Soak(soak::SoakArgs),
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// Also write the results as one JSON object to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measured seconds per scenario (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each scenario's measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Slices each server's scenarios are interleaved in (the measured and warm-up
    /// seconds are split among them).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Persistent keep-alive connections, each sending back-to-back.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Keys in the small database.
    #[arg(long, default_value_t = 1_000)]
    keys_small: usize,
    /// Keys in the large database (all pre-warmed into the server's cache).
    #[arg(long, default_value_t = 1_000_000)]
    keys_large: usize,
    /// The rotation run: this many distinct keys presented in turn...
    #[arg(long, default_value_t = 1_000)]
    rotation_keys: usize,
    /// ...out of a database of this many (all of the rotation cached: what a distinct key
    /// costs per request that one key does not).
    #[arg(long, default_value_t = 20_000)]
    rotation_of: usize,
    /// Worker threads of the load generator's runtime. One leaves the server at least
    /// one of the machine's two cores; see docs/PERFORMANCE.md.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// `--cache-max-staleness` for the pre-warmed latchkey servers, given explicitly so that
    /// the "1M keys cached" run measures the cache whatever the server's default is: a
    /// short bound (5 s was once the default) expires a pre-warmed entry long before a
    /// uniform walk over 1M keys comes back to it.
    #[arg(long, default_value_t = 3600.0)]
    cache_max_staleness: f64,
    /// Skip the context runs on the large database (naive server; Latchkey with the
    /// server's default staleness), about 40 s.
    #[arg(long)]
    skip_extras: bool,
    /// The `latchkey` binary to test (default: next to this executable, built if missing).
    #[arg(long)]
    latchkey_bin: Option<PathBuf>,
    /// `sqlite`: the run above. `postgres`: on a PostgreSQL database of `--keys-small`
    /// keys, one instance's no-op, verify and forward-auth rounds, then two instances
    /// serving verify at once while keys are blocked on one and timed on the other.
    #[arg(long, value_enum, default_value_t = Engine::Sqlite)]
    engine: Engine,
    /// With `--engine postgres`: a database URL on the server to use; the run creates a
    /// database of its own there and drops it at the end.
    #[arg(long, default_value = "postgres://127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// With `--engine postgres`: keys blocked on instance A during the two-instance run.
    #[arg(long, default_value_t = 200)]
    probes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    Sqlite,
    Postgres,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::NaiveServer(args)) => return naive::run(args),
        Some(Command::Soak(args)) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            return runtime.block_on(soak::run(args));
        }
        None => {}
    }
    let args = cli.run;
    anyhow::ensure!(
        args.connections > 0 && args.client_threads > 0,
        "--connections and --client-threads must be positive"
    );
    anyhow::ensure!(args.keys_large > args.keys_small && args.keys_small > 0, "need 0 < --keys-small < --keys-large");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.client_threads).enable_all().build()?;
    runtime.block_on(run(args))
}

/// `latchkey serve` on `database`; `None` leaves the server's default (what a deployment
/// gets out of the box).
fn serve_args(database: &str, cache_capacity: Option<usize>, staleness: Option<f64>) -> Vec<String> {
    let mut serve = vec!["serve".to_owned(), "--database".to_owned(), database.to_owned()];
    if let Some(capacity) = cache_capacity {
        serve.extend(["--cache-capacity".to_owned(), capacity.to_string()]);
    }
    if let Some(seconds) = staleness {
        serve.extend(["--cache-max-staleness".to_owned(), seconds.to_string()]);
    }
    serve
}

const LATCHKEY_SCENARIOS: &[Scenario] = &[Scenario::Noop, Scenario::Verify, Scenario::Auth];

/// Everything the latchkey or naive server is started with, and what to run against it.
struct ServerRun<'a> {
    name: &'static str,
    /// Suffix of the scenario ids (`small`, `large`, `large_default_staleness`).
    suffix: &'static str,
    db: &'a Seeded,
    program: PathBuf,
    args: Vec<String>,
    prewarm: bool,
    scenarios: &'static [Scenario],
}

struct ServerResults {
    measured: Vec<Measured>,
    info: ServerInfo,
}

async fn run(args: RunArgs) -> Result<()> {
    let total = Instant::now();
    let latchkey = server::locate_latchkey(args.latchkey_bin.as_deref())?;
    let this = std::env::current_exe()?;
    println!("latchkey binary: {}", latchkey.display());
    if args.engine == Engine::Postgres {
        return postgres::run(&args, &latchkey).await;
    }
    println!(
        "load: {} connections, {} s warm-up + {} s measured per scenario, {} load thread(s), {} cores",
        args.connections,
        args.warmup,
        args.duration,
        args.client_threads,
        cores()
    );

    let dir = tempfile::Builder::new().prefix("latchkey-bench-").tempdir()?;
    println!("seeding {} keys into {}", human_count(args.keys_small), dir.path().join("small.db").display());
    let small = seed::seed(&dir.path().join("small.db"), args.keys_small).await?;
    println!("seeding {} keys into {}", human_count(args.keys_large), dir.path().join("large.db").display());
    let large = seed::seed(&dir.path().join("large.db"), args.keys_large).await?;
    anyhow::ensure!(
        args.rotation_keys > 0 && args.rotation_keys <= args.rotation_of,
        "need 0 < --rotation-keys <= --rotation-of"
    );
    println!("seeding {} keys into {}", human_count(args.rotation_of), dir.path().join("rotation.db").display());
    let mut rotation = seed::seed(&dir.path().join("rotation.db"), args.rotation_of).await?;
    rotation.keys = std::sync::Arc::new(rotation.keys[..args.rotation_keys].to_vec());

    // Room for every key plus the Master key, so nothing is evicted during the runs.
    let capacity = (args.keys_large + 1024).max(1_000_000);
    // `staleness: None` leaves the server's default (what a deployment gets out of the box).
    let latchkey_args = |db: &Seeded, staleness: Option<f64>| serve_args(&db.database, Some(capacity), staleness);
    let naive_args = |db: &Seeded| vec!["naive-server".to_owned(), "--database".to_owned(), db.database.clone()];
    let staleness = Some(args.cache_max_staleness);
    let mut runs = vec![
        ServerRun {
            name: "latchkey",
            suffix: "small",
            db: &small,
            program: latchkey.clone(),
            args: latchkey_args(&small, staleness),
            prewarm: true,
            scenarios: LATCHKEY_SCENARIOS,
        },
        ServerRun {
            name: "naive",
            suffix: "small",
            db: &small,
            program: this.clone(),
            args: naive_args(&small),
            prewarm: false,
            scenarios: &[Scenario::NaiveVerify],
        },
        ServerRun {
            name: "latchkey",
            suffix: "rotation",
            db: &rotation,
            program: latchkey.clone(),
            args: latchkey_args(&rotation, staleness),
            prewarm: true,
            scenarios: &[Scenario::Noop, Scenario::Auth],
        },
        ServerRun {
            name: "latchkey",
            suffix: "large",
            db: &large,
            program: latchkey.clone(),
            args: latchkey_args(&large, staleness),
            prewarm: true,
            scenarios: LATCHKEY_SCENARIOS,
        },
    ];
    if !args.skip_extras {
        // Context, not targets: the naive server on the large file, and Latchkey on it
        // with no pre-warm and the server's default staleness: the cold path, first sight of
        // each key, as a fresh deployment (or one with a short staleness bound) meets it.
        runs.push(ServerRun {
            name: "naive",
            suffix: "large",
            db: &large,
            program: this.clone(),
            args: naive_args(&large),
            prewarm: false,
            scenarios: &[Scenario::NaiveVerify],
        });
        runs.push(ServerRun {
            name: "latchkey",
            suffix: "large_default_staleness",
            db: &large,
            program: latchkey.clone(),
            args: latchkey_args(&large, None),
            // The point of this run is the miss path.
            prewarm: false,
            scenarios: &[Scenario::Verify],
        });
    }

    let mut measured = Vec::new();
    let mut servers = Vec::new();
    for server_run in &runs {
        let results = bench_server(server_run, &args).await?;
        measured.extend(results.measured);
        servers.push(results.info);
    }
    let rss_of = |suffix: &str| {
        servers.iter().find(|s| s.server == "latchkey" && s.run == suffix).map(|s| s.rss_after_prewarm_mb)
    };
    let rss_small = rss_of("small").context("no small latchkey run")?;
    let rss_large = rss_of("large").context("no large latchkey run")?;

    let report = Report {
        scenarios: measured,
        servers,
        rss_mb_small: rss_small,
        rss_mb_large: rss_large,
        keys_small: args.keys_small,
        keys_large: args.keys_large,
        config: json!({
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "connections": args.connections,
            "client_threads": args.client_threads,
            "keys_small": args.keys_small,
            "keys_large": args.keys_large,
            "cache_capacity": capacity,
            "cache_max_staleness_s": args.cache_max_staleness,
            "cores": cores(),
            "latchkey_bin": latchkey.display().to_string(),
            "run_at": chrono::Utc::now().to_rfc3339(),
        }),
    };
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    println!("total time {:.0} s", total.elapsed().as_secs_f64());
    Ok(())
}

async fn bench_server(run: &ServerRun<'_>, args: &RunArgs) -> Result<ServerResults> {
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
const STOP_LIMIT: Duration = Duration::from_secs(10);

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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
