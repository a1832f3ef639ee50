//! `latchkey verify KEY`: asks `POST /verify` whether a key may make a request, and turns
//! the answer into an exit status (0 valid, 1 refused).

use super::api::Api;
use super::output::{list, say, text};
use super::{Connection, Failure, Outcome};
use clap::Args;
use serde_json::{json, Map};
use std::io::Read;
use std::process::ExitCode;

#[derive(Args)]
pub struct VerifyArgs {
    /// The key to check, or `-` to read it from standard input.
    key: String,
    /// The least level the key must have: `read`, `write`, `admin` or `master`.
    #[arg(long)]
    permission: Option<String>,
    /// The site the request is for (a Master key fits every site).
    #[arg(long, value_name = "SITE_ID")]
    site: Option<String>,
    /// A scope the key must hold; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
}

pub async fn run(connection: &Connection, args: VerifyArgs) -> Outcome {
    let api = Api::anonymous(&connection.url)?;
    let key = if args.key == "-" { read_key_from_stdin()? } else { args.key };
    let mut body = Map::new();
    body.insert("key".into(), json!(key));
    if let Some(permission) = args.permission {
        body.insert("permission".into(), json!(permission));
    }
    if let Some(site) = args.site {
        body.insert("site_id".into(), json!(site));
    }
    if !args.scopes.is_empty() {
        body.insert("scopes".into(), json!(args.scopes));
    }
    let answer = api.post("/verify", &body).await?;
    let valid = answer.body["valid"].as_bool() == Some(true);
    if connection.json {
        say!("{}", answer.text);
    } else {
        let verdict = if valid { "valid".to_owned() } else { format!("invalid: {}", text(&answer.body["code"])) };
        say!("{verdict}");
        // The key's metadata comes with the answer whenever the key exists, even refused.
        if answer.body["key_id"].is_string() {
            let key = &answer.body;
            say!(
                "key \"{}\" ({}), {}, site {}, scopes {}",
                text(&key["name"]),
                text(&key["key_id"]),
                text(&key["permission"]),
                text(&key["site_id"]),
                list(&key["scopes"])
            );
        }
    }
    Ok(if valid { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn read_key_from_stdin() -> Result<String, Failure> {
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .map_err(|error| Failure::Other(format!("could not read the key from standard input: {error}")))?;
    Ok(key.trim().to_owned())
}
