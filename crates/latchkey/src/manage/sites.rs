//! `latchkey sites list|create|rename|delete`.

use super::api::{path_segment, Api};
use super::output::{date, say, text, Table};
use super::{Connection, Outcome};
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SiteAction {
    /// List the sites the key can see (a Master key: all of them).
    #[command(after_help = "Example:\n  latchkey sites list --json | jq -r '.data[].id'")]
    List,
    /// Create a site; prints its id.
    #[command(after_help = "Example:\n  latchkey sites create \"Astro blog\"")]
    Create {
        /// The site's name, 1 to 100 characters.
        name: String,
    },
    /// Give a site a new name.
    #[command(after_help = "Example:\n  latchkey sites rename site_01J... \"Blog (production)\"")]
    Rename {
        /// The site's id, `site_...`.
        id: String,
        /// The new name, 1 to 100 characters.
        name: String,
    },
    /// Delete a site and every key of it; its keys stop working before this returns.
    #[command(after_help = "Example:\n  latchkey sites delete site_01J...")]
    Delete {
        /// The site's id, `site_...`.
        id: String,
    },
}

pub async fn run(connection: &Connection, action: SiteAction) -> Outcome {
    let api = Api::authenticated(&connection.url)?;
    let answer = match action {
        SiteAction::List => {
            let sites = api.all_pages("/sites", &[]).await?;
            if connection.json {
                super::output::print_json_list(&sites);
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new(vec!["ID", "Name", "Created"]);
            for site in &sites {
                let site: serde_json::Value = serde_json::from_str(site.get()).unwrap_or_default();
                table.row(vec![text(&site["id"]), text(&site["name"]), date(&site["created_at"])]);
            }
            table.print("No sites.");
            return Ok(ExitCode::SUCCESS);
        }
        SiteAction::Create { name } => {
            let answer = api.post("/sites", &json!({ "name": name })).await?;
            (answer, "Created")
        }
        SiteAction::Rename { id, name } => {
            let answer = api.patch(&format!("/sites/{}", path_segment(&id)), &json!({ "name": name })).await?;
            (answer, "Renamed")
        }
        SiteAction::Delete { id } => {
            api.delete(&format!("/sites/{}", path_segment(&id))).await?;
            if !connection.json {
                say!("Deleted site {id} and its keys.");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let (answer, done) = answer;
    if connection.json {
        say!("{}", answer.text);
    } else {
        say!("{done} site \"{}\" ({}).", text(&answer.body["name"]), text(&answer.body["id"]));
    }
    Ok(ExitCode::SUCCESS)
}
