//! What the management CLI prints: aligned tables and label/value lists for people, the
//! API's JSON unchanged for scripts (`--json`), and times as people read them.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use std::io::Write;

/// `println!` that stops quietly when the reader has gone (`latchkey keys list | head`),
/// instead of panicking as `println!` does; any other write error ends the command.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::manage::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub fn write_line(line: std::fmt::Arguments) {
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: could not write the output: {error}");
            std::process::exit(1);
        }
    }
}

/// Columns padded to their widest cell, two spaces apart, like the dashboard's table.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Self { header, rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table, or `empty` (e.g. "No keys.") when there are no rows.
    pub fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            say!("{empty}");
            return;
        }
        let header: Vec<String> = self.header.iter().map(|cell| cell.to_string()).collect();
        let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&self.rows) {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            say!("{}", cells.join("  ").trim_end());
        }
    }
}

/// Labels and values, one per line, values aligned: one record (`keys show`, `whoami`).
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
    for (label, value) in fields {
        say!("{label:<width$}  {value}");
    }
}

/// A list in the API's own shape, every page merged: `{"data":[...],"next_cursor":null}`,
/// each item exactly as the server wrote it.
pub fn print_json_list(items: &[Box<RawValue>]) {
    let items: Vec<&str> = items.iter().map(|item| item.get()).collect();
    say!("{{\"data\":[{}],\"next_cursor\":null}}", items.join(","));
}

/// A string field, or `—` when it is absent or null.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

/// A list of strings joined with commas, or `—` when empty.
pub fn list(value: &Value) -> String {
    let items: Vec<String> = value.as_array().into_iter().flatten().map(text).collect();
    if items.is_empty() {
        "—".to_owned()
    } else {
        items.join(", ")
    }
}

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?).ok().map(|at| at.with_timezone(&Utc))
}

/// `2026-11-27 14:03:11 UTC`, or `—`.
pub fn exact_time(value: &Value) -> String {
    parse_time(value).map_or_else(|| "—".to_owned(), |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// `2026-11-27`, or `—`: the day a key was created is what people compare.
pub fn date(value: &Value) -> String {
    parse_time(value).map_or_else(|| "—".to_owned(), |at| at.format("%Y-%m-%d").to_string())
}

/// `never`, `just now`, `5 minutes ago`, `3 days ago`: how recently a key was used is what
/// tells a live key from a stale one.
pub fn relative_time(value: &Value, now: DateTime<Utc>) -> String {
    let Some(at) = parse_time(value) else { return "never".to_owned() };
    let seconds = (now - at).num_seconds().max(0);
    let (count, unit) = match seconds {
        0..60 => return "just now".to_owned(),
        60..3_600 => (seconds / 60, "minute"),
        3_600..86_400 => (seconds / 3_600, "hour"),
        86_400..2_678_400 => (seconds / 86_400, "day"),
        2_678_400..31_536_000 => (seconds / 2_592_000, "month"),
        _ => (seconds / 31_536_000, "year"),
    };
    format!("{count} {unit}{} ago", if count == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn last_used_reads_as_how_long_ago() {
        let now = parse_time(&json!("2026-11-27T12:00:00Z")).unwrap();
        assert_eq!(relative_time(&Value::Null, now), "never");
        assert_eq!(relative_time(&json!("2026-11-27T11:59:30Z"), now), "just now");
        assert_eq!(relative_time(&json!("2026-11-27T11:00:00Z"), now), "1 hour ago");
        assert_eq!(relative_time(&json!("2026-11-24T12:00:00Z"), now), "3 days ago");
        assert_eq!(relative_time(&json!("2024-11-01T12:00:00Z"), now), "2 years ago");
    }
}
