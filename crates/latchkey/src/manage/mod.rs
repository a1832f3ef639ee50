//! The management CLI: `sites`, `keys`, `audit`, `verify` and `whoami` against a running
//! server's HTTP API, with tables for people, `--json` for scripts and exit codes for both.
//! It holds no rules of its own: every decision is the server's, reported as its error.

mod api;
mod audit;
mod import;
mod keys;
mod output;
mod sites;
mod verify;

use clap::{Args, Subcommand};
use std::process::ExitCode;

/// Where the server is and how to print; every management command takes these.
#[derive(Args)]
pub struct Connection {
    /// The server's base URL (`https://` or `http://`).
    #[arg(long, env = "LATCHKEY_URL", default_value = "http://127.0.0.1:8080", global = true, display_order = 100)]
    url: String,
    /// Print the API's JSON answer as is (lists: every page merged into one `data` array).
    #[arg(long, global = true, display_order = 101)]
    json: bool,
}

/// The management subcommands, inlined into the binary's top level.
#[derive(Subcommand)]
pub enum Command {
    /// List, create, rename and delete sites (creating, renaming and deleting need a Master
    /// key). The caller's key comes from LATCHKEY_API_KEY.
    #[command(after_help = "Example:\n  latchkey sites list")]
    Sites {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        action: sites::SiteAction,
    },
    /// List, create, show, change, block, rotate, delete and import keys. The caller's key
    /// comes from LATCHKEY_API_KEY.
    #[command(after_help = "Example:\n  latchkey keys list --site site_01J... --stale-days 90")]
    Keys {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        action: keys::KeyAction,
    },
    /// The audit trail, newest first: every change to a key or a site.
    #[command(after_help = "Example:\n  latchkey audit --key key_01J... --action key_blocked")]
    Audit {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        filters: audit::AuditFilters,
    },
    /// Check a key as a protected service would (POST /verify). Exit status 0 when the key
    /// is valid for the request, 1 when it is refused. Needs no LATCHKEY_API_KEY.
    #[command(
        after_help = "Example:\n  latchkey verify \"$CUSTOMER_KEY\" --permission write --scope flows:execute\n  \
                           printf '%s' \"$CUSTOMER_KEY\" | latchkey verify -   # keeps it out of the process list"
    )]
    Verify {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        check: verify::VerifyArgs,
    },
    /// Show the calling key itself (the one in LATCHKEY_API_KEY).
    #[command(after_help = "Example:\n  latchkey whoami")]
    Whoami {
        #[command(flatten)]
        connection: Connection,
    },
}

/// Why a management command failed.
pub enum Failure {
    /// The server refused: its error code and message (exit status 1).
    Api { code: String, message: String },
    /// A command that cannot run as given, found after parsing (exit status 2, as clap's).
    Usage(String),
    /// Anything else: an unreachable server, an unreadable file (exit status 1).
    Other(String),
}

/// Runs one management command; prints its answer on stdout and any error on stderr.
pub async fn run(command: Command) -> ExitCode {
    let outcome = match command {
        Command::Sites { connection, action } => sites::run(&connection, action).await,
        Command::Keys { connection, action } => keys::run(&connection, action).await,
        Command::Audit { connection, filters } => audit::run(&connection, filters).await,
        Command::Verify { connection, check } => verify::run(&connection, check).await,
        Command::Whoami { connection } => keys::whoami(&connection).await,
    };
    match outcome {
        Ok(code) => code,
        Err(Failure::Api { code, message }) => {
            eprintln!("error: {code}: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What every command answers on success.
type Outcome = Result<ExitCode, Failure>;
