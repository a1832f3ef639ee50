//! `--engine postgres`: the figures on PostgreSQL. One instance gets the same no-op,
//! verify and forward-auth rounds as SQLite's 1k run, so the ratios show whether cache
//! hits notice the engine; then two instances on one database serve verify traffic
//! together while the revocation probe (`propagation.rs`) blocks keys on A and times B.
//! Each run gets a database of its own, created on `--postgres-url`'s server and dropped
//! at the end.

use crate::load::{self, Scenario};
use crate::propagation::{self, Probe, Propagation};
use crate::report::{human_count, Measured};
use crate::rounds::{bench_server, ServerRun, STOP_LIMIT};
use crate::seed::{self, Seeded};
use crate::server::{self, ServerProcess};
use crate::{serve_args, RunArgs, LATCHKEY_SCENARIOS};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use std::path::Path;
use std::time::{Duration, Instant};

/// A database created for this run on the server of `--postgres-url`.
struct BenchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(admin_url: &str) -> Result<Self> {
        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("PostgreSQL does not answer at {admin_url} (--postgres-url)"))?;
        let name = format!("latchkey_bench_{}", std::process::id());
        admin.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await?;
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
        let (server, _) = admin_url.rsplit_once('/').context("--postgres-url has no database path")?;
        Ok(Self { admin_url: admin_url.to_owned(), url: format!("{server}/{name}"), name })
    }

    async fn drop(self) -> Result<()> {
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        admin.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str()).await?;
        Ok(())
    }
}

/// What one instance of the pair measured while both served verify traffic.
#[derive(Debug, Serialize)]
struct InstanceLoad {
    instance: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(args: &RunArgs, latchkey: &Path) -> Result<()> {
    let total = Instant::now();
    let database = BenchDatabase::create(&args.postgres_url).await?;
    let outcome = run_on(args, latchkey, &database.url).await;
    database.drop().await.context("drop the benchmark database")?;
    let (single, pair, propagation) = outcome?;

    let get = |id: &str| single.iter().find(|m| m.id == id);
    let ratio = |a: &str, b: &str| match (get(a), get(b)) {
        (Some(a), Some(b)) if b.rps > 0.0 => a.rps / b.rps,
        _ => f64::NAN,
    };
    let p99_ratio = match (get("verify_postgres"), get("noop_postgres")) {
        (Some(v), Some(n)) if n.p99_ms > 0.0 => v.p99_ms / n.p99_ms,
        _ => f64::NAN,
    };
    let (verify_over_noop, auth_over_noop) =
        (ratio("verify_postgres", "noop_postgres"), ratio("auth_postgres", "noop_postgres"));
    println!("\nPostgreSQL, one instance ({} keys, all cached)", human_count(args.keys_small));
    println!(
        "  verify_over_noop {verify_over_noop:.3}   auth_over_noop {auth_over_noop:.3}   verify p99 / no-op p99 {p99_ratio:.3}"
    );
    println!("PostgreSQL, two instances on one database, both serving verify at once");
    for instance in &pair {
        println!(
            "  {}: {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  max {:.2} ms  errors {}",
            instance.instance, instance.rps, instance.p50_ms, instance.p99_ms, instance.max_ms, instance.errors
        );
    }
    println!(
        "  revocation, block on A -> refused on B, {} keys: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (over 100 ms: {})",
        propagation.probes, propagation.p50_ms, propagation.p99_ms, propagation.max_ms, propagation.slower_than_100ms
    );
    println!(
        "  accepting answers after the block returned: by B {}, by A {} (must be 0); never refused by B: {}",
        propagation.accepted_by_b_after_block, propagation.accepted_by_a_after_block, propagation.never_refused_by_b
    );
    let errors: u64 = single.iter().map(|m| m.errors).sum::<u64>() + pair.iter().map(|i| i.errors).sum::<u64>();
    let broken = propagation.accepted_by_a_after_block > 0 || propagation.never_refused_by_b > 0;
    if errors > 0 || broken {
        println!("\nTHIS RUN IS NOT VALID: {errors} errors; A accepted a blocked key or B never refused one: {broken}");
    }
    if let Some(path) = &args.json {
        let report = json!({
            "engine": "postgres",
            "scenarios": single,
            "ratios": {
                "verify_over_noop": verify_over_noop,
                "auth_over_noop": auth_over_noop,
                "verify_p99_over_noop_p99": p99_ratio,
            },
            "two_instances": pair,
            "propagation": propagation,
            "config": {
                "keys": args.keys_small,
                "connections": args.connections,
                "duration_s": args.duration,
                "probes": args.probes,
                "run_at": chrono::Utc::now().to_rfc3339(),
            },
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    println!("total time {:.0} s", total.elapsed().as_secs_f64());
    anyhow::ensure!(!broken, "a blocked key was accepted where it must not be");
    Ok(())
}

async fn run_on(args: &RunArgs, latchkey: &Path, url: &str) -> Result<(Vec<Measured>, Vec<InstanceLoad>, Propagation)> {
    println!("seeding {} keys into PostgreSQL ({url})", human_count(args.keys_small));
    let store = latchkey_postgres::PostgresStore::open(url).await.map_err(|e| anyhow::anyhow!("open {url}: {e}"))?;
    let seeded = seed::fill(&store, url, args.keys_small).await;
    store.close().await;
    let seeded = seeded?;

    let serve = |staleness: Option<f64>| serve_args(url, None, staleness);
    let single = ServerRun {
        name: "latchkey",
        suffix: "postgres",
        db: &seeded,
        program: latchkey.to_owned(),
        args: serve(Some(args.cache_max_staleness)),
        prewarm: true,
        scenarios: LATCHKEY_SCENARIOS,
    };
    let single = bench_server(&single, args).await?.measured;
    // The pair runs with PostgreSQL's default staleness bound (5 s): what a deployment of
    // several instances gets, and what B falls back on if a notification were lost.
    let (pair, propagation) = two_instances(args, latchkey, &seeded, serve(None)).await?;
    Ok((single, pair, propagation))
}

async fn two_instances(
    args: &RunArgs,
    latchkey: &Path,
    seeded: &Seeded,
    serve: Vec<String>,
) -> Result<(Vec<InstanceLoad>, Propagation)> {
    let start = |name: &str| -> Result<ServerProcess> {
        let addr = server::free_address()?;
        let mut child_args = serve.clone();
        child_args.extend(["--listen".to_owned(), addr.to_string()]);
        let process = ServerProcess::spawn(name, latchkey, &child_args, addr)?;
        println!("\nstarted instance {name} on PostgreSQL at {addr}, pid {}", process.pid());
        Ok(process)
    };
    let (mut a, mut b) = (start("A")?, start("B")?);
    for instance in [&mut a, &mut b] {
        instance.wait_healthy(Duration::from_secs(60)).await?;
        let warm = load::each_key_once(instance.addr, Scenario::Verify, seeded.keys.clone(), args.connections).await?;
        anyhow::ensure!(warm.errors == 0, "the pre-warm of {} failed: {:?}", instance.name, warm.first_error);
        instance.settle(Duration::from_secs(10)).await?;
    }

    let half = (args.connections / 2).max(1);
    let measure_from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let probe = propagation::spawn(Probe {
        a: a.addr,
        b: b.addr,
        master: seeded.master.clone(),
        site: seeded.site.as_str().to_owned(),
        from: measure_from,
        until: measure_from + duration,
        keys: args.probes,
    });
    let keys = seeded.keys.clone();
    let (on_a, on_b) = tokio::join!(
        load::timed(a.addr, Scenario::Verify, keys.clone(), half, measure_from, duration),
        load::timed(b.addr, Scenario::Verify, keys, half, measure_from, duration),
    );
    let propagation = probe.join().map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
    let mut loads = Vec::new();
    for (instance, outcome) in [("A", on_a?), ("B", on_b?)] {
        loads.push(InstanceLoad {
            instance,
            rps: outcome.rps(),
            p50_ms: outcome.quantile_ms(0.50),
            p99_ms: outcome.quantile_ms(0.99),
            max_ms: outcome.latency.max() as f64 / 1e6,
            errors: outcome.errors,
            first_error: outcome.first_error,
        });
    }
    for instance in [a, b] {
        let name = instance.name.clone();
        if instance.stop(STOP_LIMIT)?.is_none() {
            println!("  instance {name} NOT stopped within {} s of SIGTERM; killed", STOP_LIMIT.as_secs());
        }
    }
    Ok((loads, propagation))
}
