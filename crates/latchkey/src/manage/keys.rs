//! `latchkey keys ...` and `latchkey whoami`: listing, creating, showing, changing,
//! blocking, rotating, deleting and importing keys.

use super::api::{path_segment, Answer, Api};
use super::output::{date, exact_time, list, print_fields, print_json_list, relative_time, say, text, Table};
use super::{Connection, Outcome};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum KeyAction {
    /// List the keys the caller may manage, newest first (every page).
    #[command(after_help = "Example:\n  latchkey keys list --site site_01J... --stale-days 90")]
    List {
        /// Only this site's keys.
        #[arg(long, value_name = "SITE_ID")]
        site: Option<String>,
        /// Only keys not used for this many days (never-used keys count from creation).
        #[arg(long, value_name = "DAYS")]
        stale_days: Option<u32>,
    },
    /// Create a key and print it, once: it is never shown again.
    #[command(
        after_help = "Example:\n  latchkey keys create --name \"Astro blog frontend\" --permission read \\\n      \
                           --site site_01J... --scope posts:read\n  \
                           KEY=$(latchkey keys create --name ci --permission write --site site_01J... --quiet)"
    )]
    Create(CreateArgs),
    /// Show one key (never its value).
    #[command(after_help = "Example:\n  latchkey keys show key_01J...")]
    Show(KeyId),
    /// Block a key: it stops working before this returns; the record stays.
    #[command(after_help = "Example:\n  latchkey keys block key_01J...")]
    Block(KeyId),
    /// Unblock a blocked key.
    #[command(after_help = "Example:\n  latchkey keys unblock key_01J...")]
    Unblock(KeyId),
    /// Delete a key for good: it stops working before this returns.
    #[command(after_help = "Example:\n  latchkey keys delete key_01J...")]
    Delete(KeyId),
    /// Issue a replacement (same site, name, level, scopes, settings) and print it once.
    #[command(after_help = "Example:\n  latchkey keys rotate key_01J... --grace-seconds 3600")]
    Rotate(RotateArgs),
    /// Change a key's name, level or scopes (never its value).
    #[command(
        after_help = "Example:\n  latchkey keys update key_01J... --permission write --scope flows:read --scope flows:execute"
    )]
    Update(UpdateArgs),
    /// Import keys made elsewhere, by their SHA-256, from a JSON Lines file: one entry object
    /// per line, sent as is, at most 10,000 (and 8 MiB) per call; a longer file is sent in
    /// several calls, each all or nothing.
    #[command(after_help = "Example:\n  latchkey keys import keys.jsonl\n  \
                           # keys.jsonl: {\"name\": \"legacy\", \"permission\": \"read\", \"site_id\": \"site_01J...\", \"sha256\": \"9f86...\"}")]
    Import {
        /// The JSON Lines file; blank lines are skipped.
        file: PathBuf,
    },
}

#[derive(Args)]
pub struct KeyId {
    /// The key's id, `key_...` (not the key itself).
    id: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// 1 to 100 characters.
    #[arg(long)]
    name: String,
    /// `read`, `write`, `admin` or `master`; never above the caller's own level.
    #[arg(long)]
    permission: String,
    /// The site the key belongs to; required except for a Master key.
    #[arg(long, value_name = "SITE_ID")]
    site: Option<String>,
    /// A fine-grained permission, `resource:action`; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// When the key stops working, RFC 3339, e.g. 2030-01-31T12:00:00Z.
    #[arg(long, value_name = "TIME")]
    expires_at: Option<String>,
    /// Print only the key, for scripts.
    #[arg(long, short, conflicts_with = "json")]
    quiet: bool,
}

#[derive(Args)]
pub struct RotateArgs {
    /// The key's id, `key_...`.
    id: String,
    /// How long the old key keeps working, 0 (default) to 2592000 (30 days).
    #[arg(long, value_name = "SECONDS")]
    grace_seconds: Option<u64>,
    /// Print only the new key, for scripts.
    #[arg(long, short, conflicts_with = "json")]
    quiet: bool,
}

#[derive(Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)))]
pub struct UpdateArgs {
    /// The key's id, `key_...`.
    id: String,
    /// The new name.
    #[arg(long, group = "change")]
    name: Option<String>,
    /// The new level: `read`, `write`, `admin` or `master`.
    #[arg(long, group = "change")]
    permission: Option<String>,
    /// The key's scopes, replacing the ones it has; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", group = "change")]
    scopes: Vec<String>,
    /// Remove every scope.
    #[arg(long, group = "change", conflicts_with = "scopes")]
    no_scopes: bool,
}

impl CreateArgs {
    /// The create body, with only the fields given.
    fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        body.insert("permission".into(), json!(self.permission));
        if let Some(site) = &self.site {
            body.insert("site_id".into(), json!(site));
        }
        if !self.scopes.is_empty() {
            body.insert("scopes".into(), json!(self.scopes));
        }
        if let Some(at) = &self.expires_at {
            body.insert("expires_at".into(), json!(at));
        }
        body
    }
}

impl UpdateArgs {
    /// The PATCH body: a field absent from it is left as it is.
    fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(name) = &self.name {
            body.insert("name".into(), json!(name));
        }
        if let Some(permission) = &self.permission {
            body.insert("permission".into(), json!(permission));
        }
        if !self.scopes.is_empty() || self.no_scopes {
            body.insert("scopes".into(), json!(self.scopes));
        }
        body
    }
}

pub async fn run(connection: &Connection, action: KeyAction) -> Outcome {
    let api = Api::authenticated(&connection.url)?;
    match action {
        KeyAction::List { site, stale_days } => {
            let mut filters = Vec::new();
            filters.extend(site.map(|site| ("site", site)));
            filters.extend(stale_days.map(|days| ("unused_for_days", days.to_string())));
            list_keys(connection, &api.all_pages("/keys", &filters).await?);
        }
        KeyAction::Create(args) => {
            let body = args.body();
            let answer = api.post("/keys", &body).await?;
            let summary = format!("Created key \"{}\" ({}).", text(&answer.body["name"]), text(&answer.body["id"]));
            print_new_key(connection, &answer, args.quiet, &summary);
        }
        KeyAction::Show(KeyId { id }) => {
            let answer = api.get(&key_path(&id, ""), &[]).await?;
            print_key(connection, &answer);
        }
        KeyAction::Block(KeyId { id }) => {
            let answer = api.post(&key_path(&id, "/block"), &json!({})).await?;
            print_changed(connection, &answer, "Blocked");
        }
        KeyAction::Unblock(KeyId { id }) => {
            let answer = api.post(&key_path(&id, "/unblock"), &json!({})).await?;
            print_changed(connection, &answer, "Unblocked");
        }
        KeyAction::Delete(KeyId { id }) => {
            api.delete(&key_path(&id, "")).await?;
            if !connection.json {
                say!("Deleted key {id}.");
            }
        }
        KeyAction::Rotate(args) => {
            let body = match args.grace_seconds {
                Some(seconds) => json!({ "grace_seconds": seconds }),
                None => json!({}),
            };
            let answer = api.post(&key_path(&args.id, "/rotate"), &body).await?;
            let old_key = match args.grace_seconds.unwrap_or(0) {
                0 => "The old key has stopped working.".to_owned(),
                seconds => format!("The old key keeps working for {seconds} more seconds."),
            };
            let summary = format!("Rotated {}: the new key is {}. {old_key}", args.id, text(&answer.body["id"]));
            print_new_key(connection, &answer, args.quiet, &summary);
        }
        KeyAction::Update(args) => {
            let body = args.body();
            let answer = api.patch(&key_path(&args.id, ""), &body).await?;
            print_key(connection, &answer);
        }
        KeyAction::Import { file } => super::import::run(connection, &api, &file).await?,
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(connection: &Connection) -> Outcome {
    let api = Api::authenticated(&connection.url)?;
    print_key(connection, &api.get("/whoami", &[]).await?);
    Ok(ExitCode::SUCCESS)
}

fn key_path(id: &str, action: &str) -> String {
    format!("/keys/{}{action}", path_segment(id))
}

/// The dashboard's table (Name, Key prefix, Permission, Status, Created, Last used), with
/// the id first, since every other command takes it.
fn list_keys(connection: &Connection, keys: &[Box<RawValue>]) {
    if connection.json {
        print_json_list(keys);
        return;
    }
    let now = chrono::Utc::now();
    let mut table = Table::new(vec!["ID", "Name", "Key prefix", "Permission", "Status", "Created", "Last used"]);
    for key in keys {
        let key: Value = serde_json::from_str(key.get()).unwrap_or_default();
        table.row(vec![
            text(&key["id"]),
            text(&key["name"]),
            text(&key["prefix"]),
            text(&key["permission"]),
            text(&key["status"]),
            date(&key["created_at"]),
            relative_time(&key["last_used_at"], now),
        ]);
    }
    table.print("No keys.");
}

/// A created or rotated key: shown this once, so the line after it says to store it.
/// `--quiet` prints the key alone, for `KEY=$(latchkey keys create ... --quiet)`.
fn print_new_key(connection: &Connection, answer: &Answer, quiet: bool, summary: &str) {
    let key = text(&answer.body["key"]);
    if connection.json {
        say!("{}", answer.text);
    } else if quiet {
        say!("{key}");
    } else {
        say!("{summary}");
        say!("");
        say!("    {key}");
        say!("");
        say!("Store this key now: it is shown this once and cannot be shown again.");
    }
}

fn print_changed(connection: &Connection, answer: &Answer, done: &str) {
    if connection.json {
        say!("{}", answer.text);
    } else {
        let key = &answer.body;
        say!("{done} key \"{}\" ({}); its status is {}.", text(&key["name"]), text(&key["id"]), text(&key["status"]));
    }
}

/// One key, every field the API has for it; optional settings only when set.
fn print_key(connection: &Connection, answer: &Answer) {
    if connection.json {
        say!("{}", answer.text);
        return;
    }
    let key = &answer.body;
    let mut fields = vec![
        ("ID", text(&key["id"])),
        ("Name", text(&key["name"])),
        ("Description", text(&key["description"])),
        ("Key prefix", text(&key["prefix"])),
        ("Permission", text(&key["permission"])),
        ("Scopes", list(&key["scopes"])),
        ("Status", text(&key["status"])),
        ("Site", key["site_id"].as_str().map_or_else(|| "— (every site)".to_owned(), str::to_owned)),
        ("Created", exact_time(&key["created_at"])),
        ("Created by", text(&key["created_by"])),
        ("Updated", exact_time(&key["updated_at"])),
        ("Last used", last_used(&key["last_used_at"])),
        ("Expires", key["expires_at"].as_str().map_or_else(|| "never".to_owned(), |_| exact_time(&key["expires_at"]))),
    ];
    let optional = [
        ("Owner", &key["owner_id"], text(&key["owner_id"])),
        ("Metadata", &key["metadata"], key["metadata"].to_string()),
        ("IP allowlist", &key["ip_allowlist"], list(&key["ip_allowlist"])),
        ("Rate limit", &key["ratelimit"], rate_limit(&key["ratelimit"])),
        ("Credits", &key["credits"], credits(&key["credits"])),
        ("Rotated from", &key["rotated_from"], text(&key["rotated_from"])),
        ("Rotated to", &key["rotated_to"], text(&key["rotated_to"])),
    ];
    for (label, raw, shown) in optional {
        let empty = raw.is_null() || raw.as_array().is_some_and(Vec::is_empty);
        if !empty {
            fields.push((label, shown));
        }
    }
    print_fields(&fields);
}

fn last_used(value: &Value) -> String {
    match value.as_str() {
        Some(_) => format!("{} ({})", exact_time(value), relative_time(value, chrono::Utc::now())),
        None => "never".to_owned(),
    }
}

fn rate_limit(value: &Value) -> String {
    format!("{} requests per {} s", value["limit"], value["window_seconds"])
}

fn credits(value: &Value) -> String {
    match value["refill"].as_object() {
        Some(refill) => {
            format!("{} left, refilled {} to {}", value["remaining"], text(&refill["interval"]), refill["amount"])
        }
        None => format!("{} left", value["remaining"]),
    }
}
