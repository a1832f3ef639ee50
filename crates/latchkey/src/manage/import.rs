//! `latchkey keys import FILE.jsonl`: one entry object per line, sent unchanged to
//! `POST /keys/import` in as few calls as the server's limits allow, with the server's
//! complaints about an entry turned into the file's line number.

use super::api::Api;
use super::output::say;
use super::{Connection, Failure};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::path::Path;

/// The most entries one call may hold (the service's `MAX_IMPORTED_KEYS`).
const MAX_ENTRIES_PER_CALL: usize = 10_000;
/// The largest body one call may have (the route's `MAX_IMPORT_BODY_BYTES`, 8 MiB), less
/// room for the `{"keys":[...]}` around the entries.
const MAX_BYTES_PER_CALL: usize = 8 * 1024 * 1024 - 64;

/// One line of the file.
struct Entry {
    line: usize,
    json: Box<RawValue>,
}

pub async fn run(connection: &Connection, api: &Api, file: &Path) -> Result<(), Failure> {
    let entries = read_entries(file)?;
    let calls = split_into_calls(&entries);
    let mut imported = 0u64;
    let mut ids: Vec<Value> = Vec::new();
    let mut only_answer = None;
    for call in &calls {
        let body =
            format!("{{\"keys\":[{}]}}", call.iter().map(|entry| entry.json.get()).collect::<Vec<_>>().join(","));
        let answer =
            api.post_text("/keys/import", body).await.map_err(|failure| explain(failure, call, imported, file))?;
        imported += answer.body["imported"].as_u64().unwrap_or(0);
        ids.extend(answer.body["ids"].as_array().cloned().unwrap_or_default());
        only_answer = Some(answer.text);
    }
    match only_answer {
        // One call: its answer as is; several: the same shape, merged.
        Some(text) if connection.json && calls.len() == 1 => say!("{text}"),
        _ if connection.json => say!("{}", json!({ "imported": imported, "ids": ids })),
        _ => say!("Imported {imported} keys."),
    }
    Ok(())
}

/// One JSON object per non-blank line, kept byte for byte.
fn read_entries(file: &Path) -> Result<Vec<Entry>, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| Failure::Other(format!("could not read {}: {error}", file.display())))?;
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let json = RawValue::from_string(line.to_owned())
            .ok()
            .filter(|json| json.get().starts_with('{'))
            .ok_or_else(|| Failure::Other(format!("line {} of {} is not a JSON object", index + 1, file.display())))?;
        entries.push(Entry { line: index + 1, json });
    }
    Ok(entries)
}

/// Consecutive runs of entries, each within both limits of one call.
fn split_into_calls(entries: &[Entry]) -> Vec<&[Entry]> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, entry) in entries.iter().enumerate() {
        let size = entry.json.get().len() + 1;
        let count = index - start;
        if count > 0 && (count == MAX_ENTRIES_PER_CALL || bytes + size > MAX_BYTES_PER_CALL) {
            calls.push(&entries[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < entries.len() {
        calls.push(&entries[start..]);
    }
    calls
}

/// The server names a refused entry by its place in the call (`keys[42]: ...`); say which
/// line of the file that is, and what earlier calls already imported.
fn explain(failure: Failure, call: &[Entry], imported_before: u64, file: &Path) -> Failure {
    let locate = |message: String| {
        let place = message
            .strip_prefix("keys[")
            .and_then(|rest| rest.split_once("]: "))
            .and_then(|(index, rest)| Some((call.get(index.parse::<usize>().ok()?)?, rest)));
        let message = match place {
            Some((entry, rest)) => format!("line {} of {}: {rest}", entry.line, file.display()),
            None => message,
        };
        match imported_before {
            0 => message,
            done => format!(
                "{message} (the {done} keys before line {} were imported; none from there on)",
                call.first().map_or(0, |entry| entry.line)
            ),
        }
    };
    match failure {
        Failure::Api { code, message } => Failure::Api { code, message: locate(message) },
        Failure::Other(message) => Failure::Other(locate(message)),
        usage @ Failure::Usage(_) => usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(sizes: &[usize]) -> Vec<Entry> {
        sizes
            .iter()
            .enumerate()
            .map(|(index, size)| Entry {
                line: index + 1,
                json: RawValue::from_string(format!("{{\"n\":\"{}\"}}", "x".repeat(size - 8))).unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_call_holds_at_most_10000_entries() {
        let calls: Vec<usize> = split_into_calls(&entries(&[10; 20_001])).iter().map(|call| call.len()).collect();
        assert_eq!(calls, [10_000, 10_000, 1]);
    }

    #[test]
    fn a_call_stays_under_the_body_limit() {
        let big = 3 * 1024 * 1024;
        let calls: Vec<usize> =
            split_into_calls(&entries(&[big, big, big, 10])).iter().map(|call| call.len()).collect();
        assert_eq!(calls, [2, 2]);
    }

    #[test]
    fn the_servers_entry_index_becomes_the_files_line() {
        let call = entries(&[10, 10, 10]);
        let failure = Failure::Api { code: "validation_failed".into(), message: "keys[1]: name is empty".into() };
        match explain(failure, &call[1..], 0, Path::new("k.jsonl")) {
            Failure::Api { message, .. } => assert_eq!(message, "line 3 of k.jsonl: name is empty"),
            _ => panic!("still the API's refusal"),
        }
    }
}
