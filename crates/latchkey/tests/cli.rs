//! The management CLI end to end: the real `latchkey` binary against a real server started
//! in this process, the caller's key always in `LATCHKEY_API_KEY`, never in argv.

#[path = "api/helpers.rs"]
#[allow(dead_code)] // the API suite's helpers; this binary uses some of them
mod helpers;

use helpers::{spawn_app, spawn_app_with, spawn_app_with_sites, Options, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// What one run of the binary did.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|_| panic!("not JSON: {}", self.stdout))
    }

    #[track_caller]
    fn assert_success(&self) -> &Self {
        assert_eq!(self.status, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

/// `latchkey ARGS` against `app`, with `key` (if any) as the caller's key. The environment
/// is cleared first, so a developer's own `LATCHKEY_*` variables cannot change the result.
fn command(app: &TestApp, key: Option<&str>, args: &[&str]) -> tokio::process::Command {
    if let Some(key) = key {
        assert!(args.iter().all(|arg| !arg.contains(key)), "the caller's key must never be in argv: {args:?}");
    }
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.args(args).env_clear().env("LATCHKEY_URL", &app.address).kill_on_drop(true);
    if let Some(key) = key {
        command.env("LATCHKEY_API_KEY", key);
    }
    command
}

async fn run(mut command: tokio::process::Command) -> Run {
    let output = command.output().await.expect("the latchkey binary runs");
    Run {
        status: output.status.code().expect("an exit status"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `latchkey ARGS` as the app's Master key.
async fn as_master(app: &TestApp, args: &[&str]) -> Run {
    run(command(app, Some(&app.master_key), args)).await
}

async fn as_key(app: &TestApp, key: &str, args: &[&str]) -> Run {
    run(command(app, Some(key), args)).await
}

/// Asks the API (not the CLI) whether a key works.
async fn verifies(app: &TestApp, key: &str) -> bool {
    let (status, body) = app.post("/api/v1/verify", "", json!({ "key": key })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["valid"] == true
}

fn full_key_pattern() -> regex::Regex {
    regex::Regex::new(r"lk_[0-9A-Za-z]{49}").unwrap()
}

// --- sites ---

#[tokio::test]
async fn sites_create_prints_the_new_site_and_sites_list_shows_it_in_a_table() {
    let app = spawn_app().await;
    let created = as_master(&app, &["sites", "create", "Astro blog"]).await;
    created.assert_success();
    let (_, sites) = app.get("/api/v1/sites", &app.master_key).await;
    let id = sites["data"][0]["id"].as_str().unwrap();
    assert_eq!(created.stdout.trim(), format!("Created site \"Astro blog\" ({id})."));
    let listed = as_master(&app, &["sites", "list"]).await;
    let lines: Vec<&str> = listed.assert_success().stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one site: {}", listed.stdout);
    assert!(lines[0].starts_with("ID") && lines[0].contains("Name") && lines[0].contains("Created"));
    assert!(lines[1].starts_with(id) && lines[1].contains("Astro blog"));
}

#[tokio::test]
async fn sites_rename_and_delete_change_what_the_api_answers() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    as_master(&app, &["sites", "rename", &site, "Blog (production)"]).await.assert_success();
    assert_eq!(app.get(&format!("/api/v1/sites/{site}"), &app.master_key).await.1["name"], "Blog (production)");
    let deleted = as_master(&app, &["sites", "delete", &site]).await;
    assert!(deleted.assert_success().stdout.contains(&site));
    assert_eq!(app.get(&format!("/api/v1/sites/{site}"), &app.master_key).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sites_list_with_json_prints_the_apis_list_shape() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let listed = as_master(&app, &["sites", "list", "--json"]).await;
    let body = listed.assert_success().json();
    assert_eq!(body["data"][0]["id"], site.as_str());
    assert_eq!(body["next_cursor"], Value::Null);
}

// --- keys create, rotate: the key shown once ---

#[tokio::test]
async fn keys_create_prints_the_key_once_with_a_line_telling_to_store_it() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let created = as_master(
        &app,
        &[
            "keys",
            "create",
            "--name",
            "Astro blog frontend",
            "--permission",
            "read",
            "--site",
            &site,
            "--scope",
            "posts:read",
        ],
    )
    .await;
    created.assert_success();
    let keys: Vec<&str> = full_key_pattern().find_iter(&created.stdout).map(|found| found.as_str()).collect();
    assert_eq!(keys.len(), 1, "the key, exactly once: {}", created.stdout);
    assert!(created.stdout.contains("Store this key now"), "{}", created.stdout);
    assert!(verifies(&app, keys[0]).await);
    let (_, listed) = app.get(&format!("/api/v1/keys?site={site}"), &app.master_key).await;
    assert_eq!(listed["data"][0]["name"], "Astro blog frontend");
    assert_eq!(listed["data"][0]["scopes"], json!(["posts:read"]));
}

#[tokio::test]
async fn keys_create_with_quiet_prints_only_the_key() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let created =
        as_master(&app, &["keys", "create", "--name", "ci", "--permission", "write", "--site", &site, "--quiet"]).await;
    let key = created.assert_success().stdout.strip_suffix('\n').expect("one line").to_owned();
    assert!(full_key_pattern().is_match(&key) && key.len() == 52, "only the key: {:?}", created.stdout);
    assert!(verifies(&app, &key).await);
}

#[tokio::test]
async fn keys_create_with_json_prints_the_apis_answer_with_the_key() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let expires = "2031-01-31T12:00:00Z";
    let created = as_master(
        &app,
        &["keys", "create", "--name", "n", "--permission", "read", "--site", &site, "--expires-at", expires, "--json"],
    )
    .await;
    let body = created.assert_success().json();
    assert_eq!(body["permission"], "read");
    assert_eq!(body["expires_at"].as_str().map(|at| at.starts_with("2031-01-31T12:00:00")), Some(true));
    assert!(verifies(&app, body["key"].as_str().unwrap()).await);
}

#[tokio::test]
async fn keys_create_refuses_quiet_with_json_as_a_usage_error() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let created = as_master(
        &app,
        &["keys", "create", "--name", "n", "--permission", "read", "--site", &site, "--quiet", "--json"],
    )
    .await;
    assert_eq!(created.status, 2, "{}", created.stderr);
}

#[tokio::test]
async fn keys_rotate_prints_a_new_working_key_and_the_old_one_stops_without_grace() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, old) = app.create_key("read", Some(&site)).await;
    let rotated = as_master(&app, &["keys", "rotate", &id]).await;
    rotated.assert_success();
    let new: Vec<&str> = full_key_pattern().find_iter(&rotated.stdout).map(|found| found.as_str()).collect();
    assert_eq!(new.len(), 1, "{}", rotated.stdout);
    assert!(rotated.stdout.contains("Store this key now"));
    assert!(verifies(&app, new[0]).await);
    assert!(!verifies(&app, &old).await);
}

#[tokio::test]
async fn keys_rotate_with_quiet_and_grace_prints_only_the_new_key_and_the_old_one_keeps_working() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, old) = app.create_key("read", Some(&site)).await;
    let rotated = as_master(&app, &["keys", "rotate", &id, "--grace-seconds", "3600", "-q"]).await;
    let new = rotated.assert_success().stdout.trim_end().to_owned();
    assert!(full_key_pattern().is_match(&new) && !new.contains(' '), "{:?}", rotated.stdout);
    assert!(verifies(&app, &new).await);
    assert!(verifies(&app, &old).await, "the old key works during the grace period");
}

// --- keys list ---

#[tokio::test]
async fn keys_list_prints_the_dashboards_columns_aligned() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, _) = app.create_key("read", Some(&site)).await;
    let listed = as_master(&app, &["keys", "list"]).await;
    let lines: Vec<&str> = listed.assert_success().stdout.lines().collect();
    let header = lines[0];
    for column in ["ID", "Name", "Key prefix", "Permission", "Status", "Created", "Last used"] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.iter().find(|line| line.starts_with(&id)).expect("the key's row");
    let column = header.find("Permission").unwrap();
    assert_eq!(&row[column..column + 4], "read", "columns line up:\n{}", listed.stdout);
    assert!(row.contains("never"), "never used: {row}");
}

#[tokio::test]
async fn keys_list_filters_by_site() {
    let (app, [blog, shop]) = spawn_app_with_sites(["blog", "shop"]).await;
    let (blog_key, _) = app.create_key("read", Some(&blog)).await;
    let (shop_key, _) = app.create_key("read", Some(&shop)).await;
    let listed = as_master(&app, &["keys", "list", "--site", &blog]).await;
    listed.assert_success();
    assert!(listed.stdout.contains(&blog_key));
    assert!(!listed.stdout.contains(&shop_key));
}

#[tokio::test]
async fn keys_list_with_stale_days_lists_only_keys_unused_for_that_long() {
    let app = spawn_app_with(Options { manual_clock: true, ..Options::default() }).await;
    let site = app.create_site("blog").await;
    let (old, _) = app.create_key("read", Some(&site)).await;
    app.advance_clock(chrono::Duration::days(31));
    let (fresh, _) = app.create_key("read", Some(&site)).await;
    let stale = as_master(&app, &["keys", "list", "--site", &site, "--stale-days", "30", "--json"]).await;
    let ids: Vec<Value> =
        stale.assert_success().json()["data"].as_array().unwrap().iter().map(|k| k["id"].clone()).collect();
    assert_eq!(ids, [json!(old)], "{fresh} is new");
}

#[tokio::test]
async fn list_commands_follow_the_cursor_to_print_every_page() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    // More than one page of the largest size (200).
    for _ in 0..205 {
        app.create_key("read", Some(&site)).await;
    }
    let keys = as_master(&app, &["keys", "list", "--json"]).await;
    let keys = keys.assert_success().json();
    assert_eq!(keys["data"].as_array().unwrap().len(), 206, "205 keys and the Master key");
    assert_eq!(keys["next_cursor"], Value::Null);
    let table = as_master(&app, &["keys", "list"]).await;
    assert_eq!(table.assert_success().stdout.lines().count(), 207, "a header and 206 rows");
    let audit = as_master(&app, &["audit", "--action", "key_created", "--json"]).await;
    assert!(audit.assert_success().json()["data"].as_array().unwrap().len() >= 205);
}

// --- keys show, block, unblock, delete, update ---

#[tokio::test]
async fn keys_show_prints_every_field_but_never_the_key() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app
        .create_key_from(json!({
            "name": "Astro blog frontend", "permission": "read", "site_id": site, "owner_id": "customer-42",
            "ratelimit": { "limit": 100, "window_seconds": 60 }
        }))
        .await;
    let shown = as_master(&app, &["keys", "show", &id]).await;
    shown.assert_success();
    for expected in
        ["Astro blog frontend", &key[..12], "read", "active", site.as_str(), "customer-42", "100 requests per 60 s"]
    {
        assert!(shown.stdout.contains(expected), "{expected} in:\n{}", shown.stdout);
    }
    assert!(!shown.stdout.contains(&key));
    let json = as_master(&app, &["keys", "show", &id, "--json"]).await;
    assert_eq!(json.assert_success().json(), app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await.1);
}

#[tokio::test]
async fn keys_block_and_unblock_change_whether_the_key_works() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let blocked = as_master(&app, &["keys", "block", &id]).await;
    assert!(blocked.assert_success().stdout.contains("blocked"));
    assert!(!verifies(&app, &key).await);
    let unblocked = as_master(&app, &["keys", "unblock", &id, "--json"]).await;
    assert_eq!(unblocked.assert_success().json()["status"], "active");
    assert!(verifies(&app, &key).await);
}

#[tokio::test]
async fn keys_delete_removes_the_key() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    as_master(&app, &["keys", "delete", &id]).await.assert_success();
    assert_eq!(app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await.0, StatusCode::NOT_FOUND);
    assert!(!verifies(&app, &key).await);
}

#[tokio::test]
async fn keys_update_changes_name_permission_and_scopes() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, _) = app.create_key("read", Some(&site)).await;
    let args =
        ["keys", "update", &id, "--name", "renamed", "--permission", "write", "--scope", "a:b", "--scope", "c:d"];
    as_master(&app, &args).await.assert_success();
    let (_, key) = app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await;
    assert_eq!(
        (&key["name"], &key["permission"], &key["scopes"]),
        (&json!("renamed"), &json!("write"), &json!(["a:b", "c:d"]))
    );
    as_master(&app, &["keys", "update", &id, "--no-scopes"]).await.assert_success();
    assert_eq!(app.get(&format!("/api/v1/keys/{id}"), &app.master_key).await.1["scopes"], json!([]));
}

#[tokio::test]
async fn keys_update_without_a_change_is_a_usage_error() {
    let app = spawn_app().await;
    let updated = as_master(&app, &["keys", "update", "key_01JD2Z6M3X5Q7W9E1R3T5Y7U9I"]).await;
    assert_eq!(updated.status, 2, "{}", updated.stderr);
}

// --- keys import ---

/// A stand-in for `POST /api/v1/keys/import` that records each call's body and answers as
/// the endpoint does: 201 `{"imported": N, "ids": [...]}`.
async fn spawn_import_recorder() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>) {
    use axum::http::HeaderMap;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = calls.clone();
    let router = axum::Router::new().route(
        "/api/v1/keys/import",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let recorded = recorded.clone();
            async move {
                let count = serde_json::from_str::<Value>(&body).unwrap()["keys"].as_array().unwrap().len();
                let key = headers.get("x-api-key").map(|value| value.to_str().unwrap().to_owned());
                recorded.lock().unwrap().push((key, body));
                let ids: Vec<String> = (0..count).map(|index| format!("key_{index}")).collect();
                (axum::http::StatusCode::CREATED, axum::Json(json!({ "imported": count, "ids": ids })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (address, calls)
}

#[tokio::test]
async fn keys_import_sends_each_line_as_is_in_calls_of_at_most_10000_entries() {
    let app = spawn_app().await;
    let (address, calls) = spawn_import_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.jsonl");
    // Odd spacing and key order: passed through byte for byte, not re-encoded.
    let mut lines: Vec<String> =
        (0..10_001).map(|index| format!("{{ \"name\" : \"k{index}\",\"permission\":\"read\" }}")).collect();
    lines.insert(5, String::new());
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut command = command(&app, Some(&app.master_key), &["keys", "import", file.to_str().unwrap()]);
    command.env("LATCHKEY_URL", &address);
    let imported = run(command).await;
    assert_eq!(imported.assert_success().stdout.trim(), "Imported 10001 keys.");
    let calls = calls.lock().unwrap();
    let sizes: Vec<usize> = calls
        .iter()
        .map(|(_, body)| serde_json::from_str::<Value>(body).unwrap()["keys"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [10_000, 1]);
    assert!(calls[0].1.starts_with(r#"{"keys":[{ "name" : "k0","permission":"read" },"#), "{}", &calls[0].1[..80]);
    assert_eq!(calls[1].1, r#"{"keys":[{ "name" : "k10000","permission":"read" }]}"#);
    assert!(calls.iter().all(|(key, _)| key.as_deref() == Some(app.master_key.as_str())));
}

#[tokio::test]
async fn keys_import_refuses_a_line_that_is_not_a_json_object_and_sends_nothing() {
    let app = spawn_app().await;
    let (address, calls) = spawn_import_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.jsonl");
    std::fs::write(&file, "{\"name\":\"a\",\"permission\":\"read\"}\n[1, 2]\n").unwrap();
    let mut command = command(&app, Some(&app.master_key), &["keys", "import", file.to_str().unwrap()]);
    command.env("LATCHKEY_URL", &address);
    let imported = run(command).await;
    assert_eq!(imported.status, 1);
    assert!(imported.stderr.contains("line 2 of"), "{}", imported.stderr);
    assert!(calls.lock().unwrap().is_empty());
}

/// A key as another system would have issued it: `oldsys_` and 32 random hex digits.
fn legacy_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    format!("oldsys_{}", bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// A line of an import file for a key that another system issued: its SHA-256, never it.
fn import_line(key: &str, permission: &str, site: &str) -> String {
    use sha2::Digest;
    let sha256: String = sha2::Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
    json!({ "name": "legacy", "permission": permission, "site_id": site, "sha256": sha256 }).to_string()
}

#[tokio::test]
async fn keys_import_brings_in_keys_of_another_system_that_then_verify() {
    let (app, [site]) = spawn_app_with_sites(["legacy"]).await;
    let keys: Vec<String> = (0..3).map(|_| legacy_key()).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.jsonl");
    let lines: Vec<String> = keys.iter().map(|key| import_line(key, "read", &site)).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let imported = as_master(&app, &["keys", "import", file.to_str().unwrap(), "--json"]).await;
    let answer = imported.assert_success().json();
    assert_eq!(answer["imported"], 3);
    assert_eq!(answer["ids"].as_array().unwrap().len(), 3);
    for key in &keys {
        assert!(verifies(&app, key).await, "{key} verifies once imported");
    }
}

#[tokio::test]
async fn keys_import_names_the_files_line_of_an_entry_the_server_refuses() {
    let (app, [site]) = spawn_app_with_sites(["legacy"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.jsonl");
    let first = legacy_key();
    let lines = [import_line(&first, "read", &site), String::new(), import_line(&legacy_key(), "emperor", &site)];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let refused = as_master(&app, &["keys", "import", file.to_str().unwrap()]).await;
    assert_eq!(refused.status, 1);
    let expected = format!("line 3 of {}: ", file.display());
    assert!(
        refused.stderr.starts_with("error: validation_failed: ") && refused.stderr.contains(&expected),
        "{}",
        refused.stderr
    );
    assert!(!verifies(&app, &first).await, "all or nothing");
}

// --- audit, verify, whoami ---

#[tokio::test]
async fn audit_filters_by_key_and_action() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, _) = app.create_key("read", Some(&site)).await;
    let (other, _) = app.create_key("read", Some(&site)).await;
    app.block(&id).await;
    app.block(&other).await;
    let audit = as_master(&app, &["audit", "--key", &id, "--action", "key_blocked"]).await;
    let lines: Vec<&str> = audit.assert_success().stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one event:\n{}", audit.stdout);
    assert!(lines[1].contains("key_blocked") && lines[1].contains(&id) && lines[1].contains("active → blocked"));
    let json = as_master(&app, &["audit", "--key", &id, "--json"]).await;
    let actions: Vec<Value> =
        json.assert_success().json()["data"].as_array().unwrap().iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions, [json!("key_blocked"), json!("key_created")]);
}

#[tokio::test]
async fn verify_exits_0_for_a_valid_key_and_1_with_the_refusal_code_otherwise() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let valid = run(command(&app, None, &["verify", &key, "--permission", "read", "--site", &site])).await;
    assert!(valid.assert_success().stdout.starts_with("valid"), "{}", valid.stdout);
    let too_low = run(command(&app, None, &["verify", &key, "--permission", "write"])).await;
    assert_eq!((too_low.status, too_low.stdout.lines().next()), (1, Some("invalid: insufficient_permission")));
    let no_scope = run(command(&app, None, &["verify", &key, "--scope", "posts:write"])).await;
    assert_eq!((no_scope.status, no_scope.stdout.lines().next()), (1, Some("invalid: missing_scope")));
    app.block(&id).await;
    let blocked = run(command(&app, None, &["verify", &key])).await;
    assert_eq!((blocked.status, blocked.stdout.lines().next()), (1, Some("invalid: key_blocked")));
}

#[tokio::test]
async fn verify_with_json_prints_the_apis_answer_as_is() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("read", Some(&site)).await;
    let verified = run(command(&app, None, &["verify", &key, "--json"])).await;
    let body = verified.assert_success().json();
    assert_eq!((&body["valid"], &body["code"], &body["key_id"]), (&json!(true), &json!("valid"), &json!(id)));
    let unknown = run(command(&app, None, &["verify", "lk_not_a_key", "--json"])).await;
    assert_eq!((unknown.status, unknown.json()["code"].clone()), (1, json!("invalid_api_key")));
}

#[tokio::test]
async fn verify_reads_the_key_from_standard_input_when_given_a_dash() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (_, key) = app.create_key("read", Some(&site)).await;
    let mut command = command(&app, None, &["verify", "-"]);
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{key}\n").as_bytes()).await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("valid"));
}

#[tokio::test]
async fn whoami_shows_the_calling_key() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("write", Some(&site)).await;
    let shown = as_key(&app, &key, &["whoami"]).await;
    shown.assert_success();
    assert!(shown.stdout.contains(&id) && shown.stdout.contains("write"), "{}", shown.stdout);
    let json = as_key(&app, &key, &["whoami", "--json"]).await;
    assert_eq!(json.assert_success().json()["id"], id.as_str());
}

// --- errors and exit statuses ---

#[tokio::test]
async fn an_api_refusal_exits_1_with_its_code_and_message_on_stderr() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (id, key) = app.create_key("admin", Some(&site)).await;
    app.block(&id).await;
    let refused = as_key(&app, &key, &["keys", "list"]).await;
    assert_eq!(refused.status, 1);
    assert_eq!(refused.stderr.trim(), "error: key_blocked: the API key is blocked");
    assert!(refused.stdout.is_empty());
}

#[tokio::test]
async fn a_level_too_low_for_the_command_exits_1_with_the_apis_code() {
    let (app, [site]) = spawn_app_with_sites(["blog"]).await;
    let (_, read_key) = app.create_key("read", Some(&site)).await;
    let refused =
        as_key(&app, &read_key, &["keys", "create", "--name", "n", "--permission", "read", "--site", &site]).await;
    assert_eq!(refused.status, 1);
    assert!(refused.stderr.starts_with("error: insufficient_permission: "), "{}", refused.stderr);
}

#[tokio::test]
async fn a_missing_api_key_is_a_usage_error_that_names_the_variable() {
    let app = spawn_app().await;
    let missing = run(command(&app, None, &["keys", "list"])).await;
    assert_eq!(missing.status, 2);
    assert!(missing.stderr.contains("LATCHKEY_API_KEY"), "{}", missing.stderr);
}

#[tokio::test]
async fn a_key_given_as_a_flag_is_refused_as_a_usage_error() {
    let app = spawn_app().await;
    for flag in ["--api-key", "--key"] {
        let refused = run(command(&app, None, &["keys", "list", flag, "lk_whatever"])).await;
        assert_eq!(refused.status, 2, "{flag}: {}", refused.stderr);
    }
}

#[tokio::test]
async fn an_unknown_subcommand_or_flag_exits_2() {
    let app = spawn_app().await;
    assert_eq!(as_master(&app, &["keys", "frobnicate"]).await.status, 2);
    assert_eq!(as_master(&app, &["sites", "list", "--colour"]).await.status, 2);
}

#[tokio::test]
async fn an_unreachable_server_exits_1_with_the_address_it_tried() {
    let app = spawn_app().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut command = command(&app, Some(&app.master_key), &["whoami"]);
    command.env("LATCHKEY_URL", format!("http://{closed}"));
    let failed = run(command).await;
    assert_eq!(failed.status, 1);
    assert!(failed.stderr.contains(&format!("could not reach the server at http://{closed}")), "{}", failed.stderr);
}

#[tokio::test]
async fn an_https_url_speaks_tls_and_a_url_of_another_scheme_is_a_usage_error() {
    let app = spawn_app().await;
    // The test server speaks plain HTTP: a TLS handshake with it fails, which proves the
    // CLI tried TLS rather than sending the key in the clear.
    let mut over_tls = command(&app, Some(&app.master_key), &["whoami"]);
    over_tls.env("LATCHKEY_URL", app.address.replace("http://", "https://"));
    let failed = run(over_tls).await;
    assert_eq!(failed.status, 1, "{}", failed.stderr);
    assert!(failed.stderr.contains("could not reach the server at https://"), "{}", failed.stderr);
    let mut other = command(&app, Some(&app.master_key), &["whoami"]);
    other.env("LATCHKEY_URL", "ftp://keys.example.com");
    let refused = run(other).await;
    assert_eq!(refused.status, 2);
    assert!(refused.stderr.contains("must start with https:// or http://"), "{}", refused.stderr);
}

#[tokio::test]
async fn a_url_ending_in_the_api_path_reaches_the_same_api() {
    let app = spawn_app().await;
    let mut command = command(&app, Some(&app.master_key), &["whoami", "--json"]);
    command.env("LATCHKEY_URL", format!("{}/api/v1/", app.address));
    assert_eq!(run(command).await.assert_success().json()["permission"], "master");
}

/// Reads the argv and environment of a running management command from /proc, while it
/// waits on a server that accepts the connection and never answers.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_callers_key_is_in_the_processs_environment_and_never_in_its_argv() {
    let app = spawn_app().await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = command(&app, Some(&app.master_key), &["keys", "list"]);
    command.env("LATCHKEY_URL", format!("http://{}", silent.local_addr().unwrap()));
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id().unwrap();
    // `spawn` can return while the kernel is still laying out the new program's argv
    // (/proc shows it empty until then), so wait until it is there.
    let mut argv = String::new();
    let started = helpers::eventually(std::time::Duration::from_secs(10), || {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        argv = String::from_utf8_lossy(&raw).replace('\0', " ");
        let running = argv.contains("keys list");
        async move { running }
    })
    .await;
    assert!(started, "the command is running: {argv:?}");
    let environment = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!argv.contains(&app.master_key), "{argv}");
    assert!(String::from_utf8_lossy(&environment).contains(&format!("LATCHKEY_API_KEY={}", app.master_key)));
    drop(child); // kill_on_drop
}

// --- completions and help ---

#[tokio::test]
async fn completions_are_printed_for_bash_zsh_and_fish() {
    let app = spawn_app().await;
    for shell in ["bash", "zsh", "fish"] {
        let completions = run(command(&app, None, &["completions", shell])).await;
        completions.assert_success();
        assert!(completions.stdout.len() > 1000 && completions.stdout.contains("whoami"), "{shell}");
    }
}

/// The subcommands `latchkey PATH --help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

#[tokio::test]
async fn every_subcommands_help_has_an_example() {
    let app = spawn_app().await;
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let mut checked = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run(command(&app, None, &args)).await;
        help.assert_success();
        if !path.is_empty() {
            assert!(help.stdout.contains("Example:\n  latchkey "), "`latchkey {}` has no example", path.join(" "));
            checked += 1;
        }
        for sub in subcommands(&help.stdout) {
            pending.push(path.iter().cloned().chain([sub]).collect());
        }
    }
    assert!(checked >= 23, "every subcommand was walked, {checked} found");
}
