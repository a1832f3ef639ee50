//! `serve`'s configuration: docs/CONFIGURATION.md matches `latchkey serve --help`, and a
//! setting comes from the flag, else its `LATCHKEY_*` variable, else the TOML file, else
//! the default. Runs the real binary with a cleared environment, so the machine's own
//! `LATCHKEY_*` variables cannot leak in.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn latchkey(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("the latchkey binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `serve --print-config` in a fresh directory, with `file` (if any) as `latchkey.toml`
/// named by `--config`. Returns the report.
fn print_config(file: Option<&str>, flags: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["serve", "--print-config"];
    if let Some(contents) = file {
        std::fs::write(dir.path().join("latchkey.toml"), contents).unwrap();
        args.extend(["--config", "latchkey.toml"]);
    }
    args.extend(flags);
    let output = latchkey(&args, env, dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

/// The report's line for one setting, e.g. `cache_capacity = "5000"  # file`.
fn setting<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find(|line| line.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{report}"))
}

#[test]
fn without_a_flag_variable_or_file_a_setting_has_its_default() {
    let report = print_config(None, &[], &[]);
    assert_eq!(setting(&report, "cache_capacity"), "cache_capacity = \"1000000\"  # default");
    assert_eq!(setting(&report, "listen"), "listen = \"127.0.0.1:8080\"  # default");
}

#[test]
fn the_config_file_beats_the_default() {
    let report = print_config(Some("cache_capacity = 5000\nlisten = \"127.0.0.1:9001\"\n"), &[], &[]);
    assert_eq!(setting(&report, "cache_capacity"), "cache_capacity = \"5000\"  # file");
    assert_eq!(setting(&report, "listen"), "listen = \"127.0.0.1:9001\"  # file");
}

#[test]
fn a_latchkey_variable_beats_the_config_file() {
    let report = print_config(Some("cache_capacity = 5000\n"), &[], &[("LATCHKEY_CACHE_CAPACITY", "6000")]);
    assert_eq!(setting(&report, "cache_capacity"), "cache_capacity = \"6000\"  # env LATCHKEY_CACHE_CAPACITY");
}

#[test]
fn a_flag_beats_the_latchkey_variable_and_the_file() {
    let report = print_config(
        Some("cache_capacity = 5000\n"),
        &["--cache-capacity", "7000"],
        &[("LATCHKEY_CACHE_CAPACITY", "6000")],
    );
    assert_eq!(setting(&report, "cache_capacity"), "cache_capacity = \"7000\"  # flag");
}

#[test]
fn latchkey_config_names_the_file_as_the_config_flag_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("settings.toml"), "failure_limit = 7\n").unwrap();
    let output = latchkey(&["serve", "--print-config"], &[("LATCHKEY_CONFIG", "settings.toml")], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(setting(&stdout(&output), "failure_limit"), "failure_limit = \"7\"  # file");
}

#[test]
fn a_list_in_the_file_becomes_the_comma_separated_value_of_its_flag() {
    let report = print_config(Some("trust_proxy = [\"10.0.0.0/8\", \"::1\"]\n"), &[], &[]);
    assert_eq!(setting(&report, "trust_proxy"), "trust_proxy = \"10.0.0.0/8,::1\"  # file");
}

#[test]
fn an_unknown_setting_in_the_file_is_refused_by_name_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("latchkey.toml"), "cache_capasity = 5000\n").unwrap();
    let output = latchkey(&["serve", "--config", "latchkey.toml"], &[], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown setting `cache_capasity`"), "{}", stderr(&output));
    assert!(stderr(&output).contains("cache_capacity"), "the known settings are listed: {}", stderr(&output));
}

#[test]
fn a_bad_value_in_the_file_is_refused_and_said_to_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("latchkey.toml"), "cache_capacity = \"lots\"\n").unwrap();
    let output = latchkey(&["serve", "--config", "latchkey.toml"], &[], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--cache-capacity=lots"), "{}", stderr(&output));
    assert!(stderr(&output).contains("config file"), "{}", stderr(&output));
}

#[test]
fn a_file_that_is_not_toml_is_refused_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("latchkey.toml"), "listen: 127.0.0.1\n").unwrap();
    let output = latchkey(&["serve", "--config", "latchkey.toml"], &[], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is not valid TOML"), "{}", stderr(&output));
}

#[test]
fn print_config_hides_the_password_of_a_database_url() {
    let report = print_config(None, &["--database", "postgres://latchkey:s3cret@db/latchkey"], &[]);
    assert_eq!(setting(&report, "database"), "database = \"postgres://latchkey:***@db/latchkey\"  # flag");
    assert!(!report.contains("s3cret"));
}

/// Kills the server when the test ends, whatever happens.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_runs_with_the_database_listen_address_and_key_prefix_of_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("from-file.db");
    let file =
        format!("database = {:?}\nlisten = \"127.0.0.1:0\"\nkey_prefix = \"cfg\"\n", database.display().to_string());
    std::fs::write(dir.path().join("latchkey.toml"), file).unwrap();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--config", "latchkey.toml"])
            .env_clear()
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut master_key = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut master_key).unwrap();
    assert!(master_key.starts_with("cfg_"), "the first Master key has the file's prefix: {master_key:?}");
    let log = read_until(server.0.stderr.take().unwrap(), "latchkey is listening", Duration::from_secs(20));
    assert!(log.contains(&database.display().to_string()), "the file's database: {log}");
    assert!(!log.contains("127.0.0.1:8080"), "not the default address: {log}");
    assert!(database.exists());
}

/// The stream's text up to and including the first line containing `needle`.
fn read_until(stream: impl std::io::Read + Send + 'static, needle: &'static str, deadline: Duration) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                break;
            }
        }
        let _ = sender.send(seen);
    });
    let start = Instant::now();
    let seen = receiver.recv_timeout(deadline).unwrap_or_else(|_| panic!("no {needle:?} within {deadline:?}"));
    assert!(start.elapsed() < deadline && seen.contains(needle), "no {needle:?} in:\n{seen}");
    seen
}

/// One option of `latchkey serve --help`.
struct HelpOption {
    flag: String,
    variable: Option<String>,
    default: Option<String>,
    meaning: String,
}

/// Reads the options out of `serve --help`: a line `--flag <VALUE>`, then its text, which
/// ends with `[env: NAME=]` and `[default: VALUE]` when it has them.
fn serve_help_options() -> Vec<HelpOption> {
    let output = latchkey(&["serve", "--help"], &[], &std::env::temp_dir());
    assert!(output.status.success());
    let help = stdout(&output);
    let header = regex::Regex::new(r"^\s+(?:-\w, )?(--[a-z-]+(?: <[A-Z_]+>)?)\s*$").unwrap();
    let variable = regex::Regex::new(r"\s*\[env: ([A-Z_]+)=?[^\]]*\]").unwrap();
    let default = regex::Regex::new(r"\s*\[default: ([^\]]*)\]").unwrap();
    let mut options: Vec<HelpOption> = Vec::new();
    for line in help.lines().skip_while(|line| !line.starts_with("Options:")).skip(1) {
        if let Some(found) = header.captures(line) {
            let flag = found[1].to_owned();
            options.push(HelpOption { flag, variable: None, default: None, meaning: String::new() });
        } else if line.starts_with("          ") {
            let option = options.last_mut().expect("text after an option");
            option.variable = variable.captures(line).map(|found| found[1].to_owned()).or(option.variable.take());
            option.default = default.captures(line).map(|found| found[1].to_owned()).or(option.default.take());
            let text = default.replace(&variable.replace(line, ""), "").trim().to_owned();
            option.meaning = [option.meaning.as_str(), text.as_str()].join(" ").trim().to_owned();
        } else if !line.trim().is_empty() {
            break;
        }
    }
    options.retain(|option| option.flag != "--help");
    assert!(options.len() > 10, "serve --help was not understood:\n{help}");
    options
}

/// The TOML key of a flag the file may set: the long name with `_` for `-`. `--config`
/// cannot name itself, and a flag without a variable (`--print-config`) is not a setting.
fn toml_key(option: &HelpOption) -> Option<String> {
    let long = option.flag.split(' ').next().unwrap().trim_start_matches("--");
    (option.variable.is_some() && long != "config").then(|| long.replace('-', "_"))
}

fn configuration_table() -> String {
    let mut table =
        String::from("| Flag | Environment variable | TOML key | Default | Meaning |\n|---|---|---|---|---|\n");
    for option in serve_help_options() {
        let code = |text: Option<String>| text.map_or_else(|| "—".to_owned(), |text| format!("`{text}`"));
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            option.flag,
            code(option.variable.clone()),
            code(toml_key(&option)),
            code(option.default.clone()),
            option.meaning.replace('|', "\\|"),
        ));
    }
    table
}

const BEGIN: &str =
    "<!-- The table below is checked by crates/latchkey/tests/config.rs against `latchkey serve --help`. -->\n";
const END: &str = "<!-- end of the checked table -->";

fn configuration_doc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIGURATION.md")
}

/// Regenerate with `LATCHKEY_UPDATE_DOCS=1 cargo test -p latchkey --test config`.
#[test]
fn docs_configuration_md_lists_every_serve_flag_as_serve_help_says_it() {
    let path = configuration_doc();
    let doc = std::fs::read_to_string(&path).expect("docs/CONFIGURATION.md exists");
    let start = doc.find(BEGIN).expect("the begin marker") + BEGIN.len();
    let end = doc.find(END).expect("the end marker");
    let expected = configuration_table();
    if doc[start..end] == expected {
        return;
    }
    if std::env::var_os("LATCHKEY_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{expected}{}", &doc[..start], &doc[end..])).unwrap();
        return;
    }
    panic!(
        "docs/CONFIGURATION.md differs from `latchkey serve --help`; rerun with LATCHKEY_UPDATE_DOCS=1 to \
         rewrite it, or paste:\n{expected}"
    );
}

#[test]
fn every_serve_setting_has_a_latchkey_variable_named_after_its_flag() {
    for option in serve_help_options().iter().filter(|option| option.flag != "--print-config") {
        let long = option.flag.split(' ').next().unwrap().trim_start_matches("--");
        let expected = format!("LATCHKEY_{}", long.replace('-', "_").to_uppercase());
        assert_eq!(option.variable.as_deref(), Some(expected.as_str()), "{}", option.flag);
    }
}

#[test]
fn print_config_reports_every_setting_the_file_may_hold() {
    let report = print_config(None, &[], &[]);
    for option in serve_help_options() {
        if let Some(key) = toml_key(&option) {
            let listed = report
                .lines()
                .any(|line| line.starts_with(&format!("{key} = ")) || line == format!("# {key} is not set"));
            assert!(listed, "{key} is missing from:\n{report}");
        }
    }
}

#[test]
fn webhook_retention_and_polling_outside_their_ranges_are_refused_before_serving() {
    for (flag, value, says) in [
        ("--webhook-retention-days", "0", "--webhook-retention-days must be 1 to 3650"),
        ("--webhook-poll-interval", "0", "--webhook-poll-interval must be 0.01 to 60 seconds"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output =
            latchkey(&["serve", "--database", "latchkey.db", "--listen", "127.0.0.1:0", flag, value], &[], dir.path());
        assert!(!output.status.success(), "{flag} {value} was accepted");
        assert!(stderr(&output).contains(says), "{}", stderr(&output));
    }
    let report = print_config(None, &["--webhook-retention-days", "30"], &[("LATCHKEY_WEBHOOK_POLL_INTERVAL", "0.25")]);
    assert_eq!(setting(&report, "webhook_retention_days"), "webhook_retention_days = \"30\"  # flag");
    assert_eq!(
        setting(&report, "webhook_poll_interval"),
        "webhook_poll_interval = \"0.25\"  # env LATCHKEY_WEBHOOK_POLL_INTERVAL"
    );
}
