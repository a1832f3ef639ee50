//! Leak reports: `client.report_leaks(keys, source)`. Needs no key of its own; Latchkey
//! blocks each reported key that is valid and answers the same whatever matched.

use crate::client::Client;
use crate::error::ClientError;
use crate::secret::ApiKey;
use reqwest::Method;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct LeakReport<'a> {
    keys: &'a [ApiKey],
    source: &'a str,
}

/// How many keys the report held; says nothing about which were real.
#[derive(Clone, Debug, Deserialize)]
pub struct LeakReceipt {
    pub received: usize,
}

impl Client {
    /// Reports 1 to 100 leaked keys found at `source` (a URL, say; up to 500 characters).
    /// Latchkey allows 10 reports a minute per client address.
    pub async fn report_leaks(&self, keys: &[ApiKey], source: &str) -> Result<LeakReceipt, ClientError> {
        self.call(self.request(Method::POST, &["leaks"]).json(&LeakReport { keys, source })).await
    }
}
