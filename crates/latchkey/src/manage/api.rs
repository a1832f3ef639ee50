//! The management CLI's HTTP side: one client for one server, the caller's key from the
//! environment, the API's error body turned into a `Failure`, and paginated lists followed
//! to the end.

use super::Failure;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::time::Duration;

/// The variable that holds the caller's key. Never a flag: a flag would land in shell
/// history and in every process listing on the machine.
pub const API_KEY_VARIABLE: &str = "LATCHKEY_API_KEY";

/// The page size asked for when following a list (the API's maximum).
const PAGE_LIMIT: u32 = 200;

pub struct Api {
    http: reqwest::Client,
    /// `http://host:port/api/v1`, without a trailing slash.
    base: String,
    key: Option<HeaderValue>,
}

/// An answer with a 2xx status: its exact text (for `--json`) and the same parsed.
pub struct Answer {
    pub text: String,
    pub body: Value,
}

impl Api {
    /// A client that authenticates with `LATCHKEY_API_KEY`; a usage error without it.
    pub fn authenticated(url: &str) -> Result<Self, Failure> {
        let key = std::env::var(API_KEY_VARIABLE).ok().filter(|key| !key.trim().is_empty()).ok_or_else(|| {
            Failure::Usage(format!(
                "set {API_KEY_VARIABLE} to the key to manage with; it is read from the environment only, never from a \
                 flag, so that it stays out of shell history and process listings"
            ))
        })?;
        let mut key = HeaderValue::from_str(key.trim())
            .map_err(|_| Failure::Usage(format!("{API_KEY_VARIABLE} holds characters a key never has")))?;
        // Keeps the key out of any debug output of the request.
        key.set_sensitive(true);
        Ok(Self { key: Some(key), ..Self::anonymous(url)? })
    }

    /// A client that sends no key of its own (`verify`: the key checked is the credential).
    pub fn anonymous(url: &str) -> Result<Self, Failure> {
        let url = url.trim().trim_end_matches('/');
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(Failure::Usage(format!("--url must start with https:// or http://, not {url:?}")));
        }
        let base = if url.ends_with("/api/v1") { url.to_owned() } else { format!("{url}/api/v1") };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|error| Failure::Other(format!("could not build the HTTP client: {error}")))?;
        Ok(Self { http, base, key: None })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, Failure> {
        self.send(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> Result<Answer, Failure> {
        self.send(Method::POST, path, &[], Some(serde_json::to_string(body).expect("JSON bodies serialize"))).await
    }

    /// A POST whose JSON body is already written (`keys import` sends entries unchanged).
    pub async fn post_text(&self, path: &str, body: String) -> Result<Answer, Failure> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &impl Serialize) -> Result<Answer, Failure> {
        self.send(Method::PATCH, path, &[], Some(serde_json::to_string(body).expect("JSON bodies serialize"))).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer, Failure> {
        self.send(Method::DELETE, path, &[], None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key.clone());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(|error| unreachable(&self.base, &error))?;
        let status = response.status();
        let text = response.text().await.map_err(|error| unreachable(&self.base, &error))?;
        if !status.is_success() {
            return Err(refused(status, &text));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|_| Failure::Other(format!("the server's answer to {url} is not JSON ({status})")))?
        };
        Ok(Answer { text, body })
    }

    /// Every item of a paginated list, following `next_cursor` to the end. The items stay
    /// as the server wrote them, so `--json` can print them unchanged.
    pub async fn all_pages(&self, path: &str, filters: &[(&str, String)]) -> Result<Vec<Box<RawValue>>, Failure> {
        #[derive(Deserialize)]
        struct Page {
            data: Vec<Box<RawValue>>,
            next_cursor: Option<String>,
        }
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = filters.to_vec();
            query.push(("limit", PAGE_LIMIT.to_string()));
            query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
            let answer = self.get(path, &query).await?;
            let page: Page = serde_json::from_str(&answer.text)
                .map_err(|error| Failure::Other(format!("the server's list from {path} is not a page: {error}")))?;
            items.extend(page.data);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }
}

/// An id as one path segment: whatever is typed cannot reach another route.
pub fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn unreachable(base: &str, error: &reqwest::Error) -> Failure {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Failure::Other(format!("could not reach the server at {base}: {reason}"))
}

/// The API's `{"error": {"code", "message"}}`, or the status when a proxy answered instead.
fn refused(status: StatusCode, text: &str) -> Failure {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match (body["error"]["code"].as_str(), body["error"]["message"].as_str()) {
        (Some(code), Some(message)) => Failure::Api { code: code.to_owned(), message: message.to_owned() },
        _ => Failure::Api { code: format!("http_{}", status.as_u16()), message: status.to_string() },
    }
}
