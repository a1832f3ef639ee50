//! The deployment files we ship are code: the systemd unit must pass `systemd-analyze
//! verify` as it is, apart from where the binary lives.

use std::process::Command;

fn unit_file() -> String {
    let shipped = include_str!("../../../../deploy/latchkey.service");
    shipped.replace("/usr/local/bin/latchkey", env!("CARGO_BIN_EXE_latchkey"))
}

#[test]
fn the_shipped_systemd_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "systemd-analyze is missing; scripts/install-test-deps installs it");
        eprintln!("SKIPPED LOUDLY: systemd-analyze is not installed; run scripts/install-test-deps");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("latchkey.service");
    std::fs::write(&unit, unit_file()).unwrap();
    let verified = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
}

#[test]
fn the_unit_keeps_the_first_master_key_out_of_the_journal_and_runs_unprivileged() {
    let unit = unit_file();
    for line in ["StandardOutput=null", "DynamicUser=yes", "StateDirectory=latchkey", "ProtectSystem=strict"] {
        assert!(unit.lines().any(|l| l == line), "{line} is missing from deploy/latchkey.service");
    }
}
