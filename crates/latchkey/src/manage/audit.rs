//! `latchkey audit`: the audit trail as a table, newest first.

use super::api::Api;
use super::output::{exact_time, print_json_list, text, Table};
use super::{Connection, Outcome};
use clap::Args;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Args)]
pub struct AuditFilters {
    /// Only events about this key (`key_...`).
    #[arg(long, value_name = "KEY_ID")]
    key: Option<String>,
    /// Only this action, e.g. `key_created`, `key_blocked`, `key_rotated`.
    #[arg(long)]
    action: Option<String>,
    /// Only events of this site.
    #[arg(long, value_name = "SITE_ID")]
    site: Option<String>,
}

pub async fn run(connection: &Connection, filters: AuditFilters) -> Outcome {
    let api = Api::authenticated(&connection.url)?;
    let mut query = Vec::new();
    query.extend(filters.key.map(|key| ("key", key)));
    query.extend(filters.action.map(|action| ("action", action)));
    query.extend(filters.site.map(|site| ("site", site)));
    let events = api.all_pages("/audit", &query).await?;
    if connection.json {
        print_json_list(&events);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec!["At", "Action", "Key", "By", "Site", "Changes"]);
    for event in &events {
        let event: Value = serde_json::from_str(event.get()).unwrap_or_default();
        table.row(vec![
            exact_time(&event["at"]),
            text(&event["action"]),
            text(&event["target_key_id"]),
            text(&event["actor_prefix"]),
            text(&event["site_id"]),
            changes(&event["changes"]),
        ]);
    }
    table.print("No audit events.");
    Ok(ExitCode::SUCCESS)
}

/// `permission: read → write; name: a → b`.
fn changes(value: &Value) -> String {
    let changes: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|change| format!("{}: {} → {}", text(&change["field"]), text(&change["before"]), text(&change["after"])))
        .collect();
    changes.join("; ")
}
