//! `latchkey-bench soak`: a long run of mixed verification traffic (verify and
//! forward-auth, alternating every half minute) against one release server holding a
//! million keys, walking them uniformly. Each minute it prints throughput, p99, errors and
//! the server's RSS; it fails when any request failed or when the RSS at the end is more
//! than 10% above the RSS at the middle (memory that keeps growing). `scripts/soak` runs it
//! for 10 minutes; it is not part of the test suite.

use crate::load::{self, Scenario};
use crate::seed;
use crate::server::{self, ServerProcess};
use anyhow::{ensure, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
    /// Keys in the database, walked uniformly.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The `latchkey` binary (default: next to this executable).
    #[arg(long)]
    latchkey_bin: Option<PathBuf>,
}

pub async fn run(args: SoakArgs) -> Result<()> {
    let latchkey = server::locate_latchkey(args.latchkey_bin.as_deref())?;
    let dir = tempfile::tempdir()?;
    let db = seed::seed(&dir.path().join("soak.db"), args.keys).await?;
    let addr = server::free_address()?;
    let server_args =
        vec!["serve".to_owned(), "--listen".into(), addr.to_string(), "--database".into(), db.database.clone()];
    let mut server = ServerProcess::spawn("latchkey", &latchkey, &server_args, addr)?;
    server.wait_healthy(Duration::from_secs(60)).await?;
    println!(
        "soak: {} keys, {} connections, {} minutes, pid {}",
        args.keys,
        args.connections,
        args.minutes,
        server.pid()
    );
    println!("{:>6} {:>14} {:>10} {:>10} {:>8} {:>8}", "minute", "scenario", "req/s", "p99 ms", "errors", "RSS MB");
    let mut rss = Vec::new();
    let mut errors = 0;
    for minute in 1..=args.minutes {
        for scenario in [Scenario::Verify, Scenario::Auth] {
            let from = Instant::now();
            let outcome =
                load::timed(addr, scenario, db.keys.clone(), args.connections, from, Duration::from_secs(30)).await?;
            errors += outcome.errors;
            let mb = server.rss_mb()?;
            println!(
                "{minute:>6} {:>14} {:>10.0} {:>10.3} {:>8} {:>8.1}",
                format!("{scenario:?}"),
                outcome.rps(),
                outcome.quantile_ms(0.99),
                outcome.errors,
                mb
            );
            if let Some(error) = outcome.first_error {
                println!("       first error: {error}");
            }
        }
        rss.push(server.rss_mb()?);
    }
    server.stop(Duration::from_secs(10))?;
    let (start, middle, end) = (rss[0], rss[rss.len() / 2], rss[rss.len() - 1]);
    println!("RSS: start {start:.1} MB, middle {middle:.1} MB, end {end:.1} MB; errors: {errors}");
    ensure!(errors == 0, "{errors} requests failed");
    ensure!(end <= middle * 1.10, "RSS grew by more than 10% in the second half: {middle:.1} → {end:.1} MB");
    Ok(())
}
