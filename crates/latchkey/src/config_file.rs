//! The optional TOML file of `serve` settings (`--config` / `LATCHKEY_CONFIG`), and the
//! report `serve --print-config` prints.
//!
//! Precedence is flag > `LATCHKEY_*` variable > file > default. clap already orders the
//! first, second and last; the file's settings are added to the command line as flags only
//! for the arguments that clap filled from their default (or left unset), so clap keeps
//! parsing and validating every value, and no environment variable is ever changed.

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, FromArgMatches, Parser};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

/// The subcommand whose flags the file may set.
const SERVE: &str = "serve";
/// The one setting with a variable that the file cannot set: the file's own name.
const CONFIG_ARG: &str = "config";

/// Parses the command line, filling in `serve`'s settings from its config file. Exits like
/// clap does (status 2) on a bad command line or a bad file. Also returns the effective
/// settings, as `serve --print-config` prints them (empty for other subcommands).
pub fn parse_command_line<C: Parser>(args: Vec<OsString>) -> (C, String) {
    let mut command = C::command();
    let matches = command.try_get_matches_from_mut(&args).unwrap_or_else(|error| error.exit());
    let Some((SERVE, serve)) = matches.subcommand() else {
        return (typed(&mut command, &matches), String::new());
    };
    let serve_command = command.find_subcommand_mut(SERVE).expect("serve is a subcommand");
    let file_flags = match serve.get_one::<std::path::PathBuf>(CONFIG_ARG) {
        Some(path) => flags_from_file(path, serve_command, serve)
            .unwrap_or_else(|message| serve_command.error(clap::error::ErrorKind::ValueValidation, message).exit()),
        None => Vec::new(),
    };
    if file_flags.is_empty() {
        let report = effective_settings(serve_command, serve, &BTreeSet::new());
        return (typed(&mut command, &matches), report);
    }
    let from_file: BTreeSet<String> = file_flags.iter().map(|flag| flag.id.clone()).collect();
    let extended: Vec<OsString> =
        args.into_iter().chain(file_flags.iter().map(|flag| OsString::from(&flag.argument))).collect();
    let matches = command.try_get_matches_from_mut(&extended).unwrap_or_else(|error| {
        // clap names the flag; say that it came from the file, not from the command line.
        let _ = error.print();
        let added: Vec<&str> = file_flags.iter().map(|flag| flag.argument.as_str()).collect();
        eprintln!("note: the config file's settings were given as {}", added.join(" "));
        std::process::exit(error.exit_code())
    });
    let serve = matches.subcommand_matches(SERVE).expect("still serve");
    let serve_command = command.find_subcommand_mut(SERVE).expect("serve is a subcommand");
    let report = effective_settings(serve_command, serve, &from_file);
    (typed(&mut command, &matches), report)
}

fn typed<C: FromArgMatches>(command: &mut Command, matches: &ArgMatches) -> C {
    C::from_arg_matches(matches).unwrap_or_else(|error| error.format(command).exit())
}

/// A `serve` argument that the file may set: it has a `LATCHKEY_*` variable and is not
/// `--config` itself. Its TOML key is the long flag with `_` for `-`.
fn file_settable(command: &Command) -> impl Iterator<Item = (&clap::Arg, String)> {
    command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some() && arg.get_id() != CONFIG_ARG)
        .filter_map(|arg| arg.get_long().map(|long| (arg, long.replace('-', "_"))))
}

/// One setting of the file, as the flag it becomes.
struct FileFlag {
    id: String,
    argument: String,
}

/// Reads the file and returns, as `--flag=value` arguments, the settings that neither a
/// flag nor a variable gave. Unknown keys are refused: a typo must not silently fall back
/// to a default.
fn flags_from_file(path: &Path, serve: &Command, matches: &ArgMatches) -> Result<Vec<FileFlag>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("could not read the config file {}: {error}", path.display()))?;
    let table: toml::Table =
        text.parse().map_err(|error| format!("the config file {} is not valid TOML: {error}", path.display()))?;
    let known: Vec<(&clap::Arg, String)> = file_settable(serve).collect();
    let mut flags = Vec::new();
    for (key, value) in &table {
        let Some((arg, _)) = known.iter().find(|(_, known_key)| known_key == key) else {
            let names: Vec<&str> = known.iter().map(|(_, key)| key.as_str()).collect();
            return Err(format!(
                "the config file {} has an unknown setting `{key}`; the known ones are: {}",
                path.display(),
                names.join(", ")
            ));
        };
        let value = flag_value(value).ok_or_else(|| {
            format!("in the config file {}, `{key}` must be a string, a number or a list of strings", path.display())
        })?;
        let id = arg.get_id().as_str();
        if matches!(matches.value_source(id), None | Some(ValueSource::DefaultValue)) {
            let long = arg.get_long().expect("file settings have a long flag");
            flags.push(FileFlag { id: id.to_owned(), argument: format!("--{long}={value}") });
        }
    }
    Ok(flags)
}

/// A TOML value as the text of a flag; a list (e.g. `trust_proxy`) joins with commas, as
/// the flag and its variable take it.
fn flag_value(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Array(items) => {
            items.iter().map(|item| item.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().map(|v| v.join(","))
        }
        _ => None,
    }
}

/// Every file-settable setting with its value and where it came from, as TOML that can be
/// used as a config file again (a database password is replaced by `***`).
fn effective_settings(serve: &Command, matches: &ArgMatches, from_file: &BTreeSet<String>) -> String {
    let mut report =
        String::from("# The effective settings of `latchkey serve`; each comment says where it came from.\n");
    for (arg, key) in file_settable(serve) {
        let id = arg.get_id().as_str();
        let Some(values) = matches.get_raw(id) else {
            report.push_str(&format!("# {key} is not set\n"));
            continue;
        };
        let value = values.map(|value| value.to_string_lossy()).collect::<Vec<_>>().join(",");
        let value = if id == "database" { hide_password(&value) } else { value };
        let source = if from_file.contains(id) {
            "file".to_owned()
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag".to_owned(),
                Some(ValueSource::EnvVariable) => {
                    format!("env {}", arg.get_env().map(|name| name.to_string_lossy()).unwrap_or_default())
                }
                _ => "default".to_owned(),
            }
        };
        report.push_str(&format!("{key} = {}  # {source}\n", toml::Value::String(value)));
    }
    report
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`: the report is for
/// reading and pasting, where a password does not belong.
fn hide_password(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else { return location.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return location.to_owned() };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_is_hidden_and_everything_else_is_kept() {
        assert_eq!(hide_password("postgres://lk:s3cret@db:5432/lk"), "postgres://lk:***@db:5432/lk");
        assert_eq!(hide_password("postgres://lk@db/lk"), "postgres://lk@db/lk");
        assert_eq!(hide_password("latchkey.db"), "latchkey.db");
    }

    #[test]
    fn a_list_of_strings_becomes_a_comma_separated_flag() {
        let value: toml::Value = toml::Value::Array(vec!["10.0.0.0/8".into(), "::1".into()]);
        assert_eq!(flag_value(&value).as_deref(), Some("10.0.0.0/8,::1"));
        assert_eq!(flag_value(&toml::Value::Boolean(true)), None);
    }
}
