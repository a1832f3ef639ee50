//! `ApiKey`: a full key, which never shows itself in `Debug` output, so that logging a
//! client, a request or a created key cannot leak it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A full Latchkey key (`lk_...`). Read it with [`ApiKey::expose`]; `Debug` prints
/// `ApiKey(<redacted>)`, and there is deliberately no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for a header or for the one time it is shown to a person.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self(key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = ApiKey::new("lk_secretsecretsecret");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert_eq!(format!("{:?}", Some(&key)), "Some(ApiKey(<redacted>))");
    }
}
