//! Servers under test as child processes: finding the release `latchkey` binary, picking
//! a free port, waiting for health, reading the child's memory and CPU time from /proc,
//! and stopping it (gracefully, then by force) even when the harness fails.

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release `latchkey` binary: next to this executable (both live in target/release).
/// Built with cargo when it is missing, and also whenever we were started by `cargo run`:
/// the seed is written by the `latchkey-sqlite` compiled into this harness, so a stale
/// server binary (older migrations) would refuse the database. An up-to-date build is a
/// one-second no-op.
pub fn locate_latchkey(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "--latchkey-bin {} does not exist", path.display());
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("where is this executable?")?;
    let dir = exe.parent().context("executable has no directory")?;
    let binary = dir.join("latchkey");
    // `cargo run` sets CARGO to the cargo that built us.
    let cargo = std::env::var("CARGO").ok();
    let why = if !binary.is_file() {
        Some("it is missing")
    } else if cargo.is_some() {
        Some("to match this harness's sources")
    } else {
        None
    };
    if let Some(why) = why {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        println!("running `cargo build --release -p latchkey` ({why})");
        let status = Command::new(cargo.as_deref().unwrap_or("cargo"))
            .args(["build", "--release", "-p", "latchkey"])
            .current_dir(&workspace)
            .status()
            .context("could not run cargo")?;
        anyhow::ensure!(status.success(), "cargo build --release -p latchkey failed");
        anyhow::ensure!(binary.is_file(), "{} still missing after the build", binary.display());
    }
    Ok(binary)
}

/// An address on loopback that was free a moment ago. The child binds it itself, so
/// there is a tiny race with other programs; the health check would catch it.
pub fn free_address() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

pub struct ServerProcess {
    pub name: String,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl ServerProcess {
    pub fn spawn(name: &str, program: &Path, args: &[String], addr: SocketAddr) -> Result<Self> {
        let child = Command::new(program)
            .args(args)
            // `LATCHKEY_BENCH_SERVER_LOG` (e.g. `warn,latchkey_postgres=trace`) to look
            // inside a run; the default keeps the servers' logging off the measurements.
            .env("LATCHKEY_LOG", std::env::var("LATCHKEY_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdin(Stdio::null())
            // stdout would only carry a bootstrap Master key, and the seed has one already.
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {}", program.display()))?;
        Ok(Self { name: name.to_owned(), addr, child: Some(child) })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub async fn wait_healthy(&mut self, deadline: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("{} exited before it was healthy: {status}", self.name);
                }
            }
            if crate::load::healthy(self.addr).await {
                return Ok(());
            }
            if started.elapsed() > deadline {
                bail!("{} not healthy on {} after {:?}", self.name, self.addr, deadline);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident memory (VmRSS), in MB (10^6 bytes).
    pub fn rss_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
        let kb: f64 = line.split_whitespace().nth(1).context("empty VmRSS")?.parse()?;
        Ok(kb * 1024.0 / 1e6)
    }

    /// Waits until the server has been (nearly) idle for half a second: after a pre-warm
    /// it still writes the last-used times and usage counts of every key it saw, and a
    /// scenario measured meanwhile would be charged for that. Returns how long it waited,
    /// and whether the server did go idle within `limit`.
    pub async fn settle(&self, limit: Duration) -> Result<(Duration, bool)> {
        let started = Instant::now();
        let stat = format!("/proc/{}/stat", self.pid());
        loop {
            let before = process_cpu_time(&stat)?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let used = process_cpu_time(&stat)?.saturating_sub(before);
            // 5% of one core: the once-a-second flush of an idle server stays below that.
            if used <= Duration::from_millis(25) {
                return Ok((started.elapsed(), true));
            }
            if started.elapsed() >= limit {
                return Ok((started.elapsed(), false));
            }
        }
    }

    /// SIGTERM (the server finishes requests and flushes what it holds in memory), then
    /// SIGKILL if it has not exited within `limit`. Returns how long the graceful stop
    /// took, or `None` when it had to be killed.
    pub fn stop(mut self, limit: Duration) -> Result<Option<Duration>> {
        let Some(mut child) = self.child.take() else {
            return Ok(Some(Duration::ZERO));
        };
        // SAFETY: plain kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < limit {
            if child.try_wait()?.is_some() {
                return Ok(Some(started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        Ok(None)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A harness error must not leave a server running and holding its port.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time of a process's threads whose name starts with `prefix`; sqlx runs each SQLite
/// connection on its own thread named `sqlx-sqlite-worker-N`, so this separates time spent
/// inside SQLite (reads and the batched writes) from the async runtime's.
pub fn threads_cpu_time(pid: u32, prefix: &str) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        // A thread may end between listing and reading: skip it.
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else { continue };
        if comm.starts_with(prefix) {
            if let Ok(time) = process_cpu_time(&dir.join("stat").to_string_lossy()) {
                total += time;
            }
        }
    }
    Ok(total)
}

/// utime + stime from a /proc/<pid>/stat file.
pub fn process_cpu_time(stat_path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(stat_path)?;
    // The command name (field 2) may contain spaces; fields after its ')' are fixed.
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64((utime + stime) as f64 / ticks))
}

/// Busy CPU time of the whole machine (all cores, everything but idle and iowait), to
/// tell how much of a measured window went to neither the server nor the load generator.
pub fn machine_busy_time() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(fields.len() >= 5, "short cpu line in /proc/stat");
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let busy: u64 = fields.iter().take(8).sum::<u64>() - fields[3] - fields[4];
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(busy as f64 / ticks))
}
