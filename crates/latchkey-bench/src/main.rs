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
mod rounds;
mod seed;
mod server;
mod soak;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use load::Scenario;
use report::{human_count, Report};
use rounds::{bench_server, ServerRun};
use seed::Seeded;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

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

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
