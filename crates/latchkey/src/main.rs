//! The `latchkey` binary: parses flags, environment and the config file, then runs a
//! subcommand: the server's own (serve, bootstrap, migrate, openapi) or a management
//! command over HTTP (manage/). No business logic lives here.

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

mod config_file;
mod manage;
mod migrate;
mod server;

/// mimalloc: the verification path allocates small, short-lived objects on every worker
/// thread, and a million cached entries must not fragment into glibc's per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Self-hosted API key management",
    after_help = "The management commands (sites, keys, audit, whoami) call a running server at --url \
                  (LATCHKEY_URL) with the key in LATCHKEY_API_KEY, never in a flag:\n  \
                  read -rs LATCHKEY_API_KEY && export LATCHKEY_API_KEY\n  \
                  latchkey keys list"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. On an empty database, prints a new Master key once.
    #[command(
        after_help = "Example:\n  latchkey serve --listen 0.0.0.0:8080 --database postgres://latchkey@db/latchkey\n  \
                           latchkey serve --config /etc/latchkey.toml --print-config"
    )]
    Serve(server::ServeArgs),
    /// Create the database if needed and print a new Master key (only the key) on stdout.
    #[command(after_help = "Example:\n  latchkey bootstrap --database latchkey.db > master.key")]
    Bootstrap(server::DatabaseArgs),
    /// Print the OpenAPI document.
    #[command(after_help = "Example:\n  latchkey openapi > openapi.json")]
    Openapi,
    /// Copy everything (sites, keys with their hashes, audit) from one database to
    /// another, e.g. from SQLite to PostgreSQL, without re-issuing a single key.
    #[command(
        after_help = "Example:\n  latchkey migrate --from sqlite://latchkey.db --to postgres://latchkey@db/latchkey"
    )]
    Migrate(MigrateArgs),
    #[command(flatten)]
    Manage(manage::Command),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  latchkey completions bash > /etc/bash_completion.d/latchkey\n  \
                           latchkey completions zsh > \"${fpath[1]}/_latchkey\"\n  \
                           latchkey completions fish > ~/.config/fish/completions/latchkey.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct MigrateArgs {
    /// The source database: a file path, `sqlite://` or `postgres://` URL.
    #[arg(long)]
    from: String,
    /// The target database; must be empty unless `--force`.
    #[arg(long)]
    to: String,
    /// Copy into a target that already holds data.
    #[arg(long)]
    force: bool,
    /// With PostgreSQL: the schema holding Latchkey's tables (either side).
    #[arg(long, env = "LATCHKEY_POSTGRES_SCHEMA")]
    postgres_schema: Option<String>,
}

fn main() -> ExitCode {
    // Parsed before the runtime starts: the config file is read here, on one thread.
    let (cli, effective_settings) = config_file::parse_command_line::<Cli>(std::env::args_os().collect());
    let filter = tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match &cli.command {
        Command::Serve(args) if args.log_format == server::LogFormat::Json => logs.json().init(),
        _ => logs.init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a Tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => server::serve(args, &effective_settings).await,
            Command::Bootstrap(args) => server::bootstrap(args).await,
            Command::Migrate(args) => {
                let from = server::open_store(&args.from, args.postgres_schema.as_deref()).await?;
                let to = server::open_store(&args.to, args.postgres_schema.as_deref()).await?;
                migrate::copy_everything(from.as_ref(), to.as_ref(), args.force).await
            }
            Command::Openapi => {
                println!("{}", serde_json::to_string_pretty(&latchkey_server::openapi_document())?);
                Ok(())
            }
            Command::Manage(command) => return Ok(manage::run(command).await),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "latchkey", &mut std::io::stdout());
                Ok(())
            }
        }
        .map(|()| ExitCode::SUCCESS)
    });
    result.unwrap_or_else(|error: anyhow::Error| {
        // As `fn main() -> anyhow::Result<()>` reported it before.
        eprintln!("Error: {error:?}");
        ExitCode::FAILURE
    })
}
