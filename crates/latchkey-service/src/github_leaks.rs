//! Leak reports in GitHub's secret-scanning partner format: a JSON array of
//! `{"token", "type", "url", "source"}`, signed with ECDSA (P-256, SHA-256) by one of the
//! keys GitHub publishes (`GET https://api.github.com/meta/public_keys/secret_scanning`),
//! named by the `Github-Public-Key-Identifier` header, the signature (base64 DER) in
//! `Github-Public-Key-Signature`. The operator saves that document and points Latchkey
//! at it (`--github-secret-scanning-keys`).
//!
//! A report whose signature does not verify is refused before anything is read from it.
//! A signed report is GitHub's, so it is not throttled, and it is told which tokens are
//! real (`true_positive`, blocked as any leak report blocks) and which are not
//! (`false_positive`), as the partner format asks; tokens are named by their SHA-256, so
//! the answer never holds a key.

use crate::error::{ServiceError, ServiceResult};
use crate::Service;
use base64::Engine;
use latchkey_core::Denied;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The most tokens one report may hold.
pub const MAX_GITHUB_TOKENS: usize = 1000;

/// GitHub's secret-scanning public keys, by identifier.
#[derive(Clone, Default)]
pub struct SecretScanningKeys(Vec<(String, VerifyingKey)>);

impl std::fmt::Debug for SecretScanningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(id, _)| id)).finish()
    }
}

#[derive(Deserialize)]
struct PublishedKeys {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
}

impl SecretScanningKeys {
    /// Reads GitHub's published document: `{"public_keys": [{"key_identifier", "key"
    /// (PEM), "is_current"}]}`.
    pub fn from_github_json(text: &str) -> Result<Self, String> {
        let published: PublishedKeys =
            serde_json::from_str(text).map_err(|error| format!("not GitHub's public-keys document: {error}"))?;
        let keys = published
            .public_keys
            .into_iter()
            .map(|entry| {
                VerifyingKey::from_public_key_pem(entry.key.trim())
                    .map(|key| (entry.key_identifier.clone(), key))
                    .map_err(|error| format!("key {}: not a P-256 public key in PEM: {error}", entry.key_identifier))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn verifies(&self, key_identifier: &str, payload: &[u8], signature_base64: &str) -> bool {
        let Some((_, key)) = self.0.iter().find(|(id, _)| id == key_identifier) else {
            return false;
        };
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature_base64.trim()) else {
            return false;
        };
        Signature::from_der(&der).is_ok_and(|signature| key.verify(payload, &signature).is_ok())
    }
}

#[derive(Deserialize)]
struct ReportedToken {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
}

/// The partner format's answer for one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenLabel {
    /// SHA-256 of the token, in hex.
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: &'static str,
}

impl Service {
    /// Checks the report's signature against the configured keys, then labels each token
    /// and blocks the real ones (with `key_reported_leaked` and `key.leaked`).
    pub async fn report_github_leaks(
        &self,
        payload: &[u8],
        key_identifier: &str,
        signature: &str,
    ) -> ServiceResult<Vec<TokenLabel>> {
        if self.github_keys.is_empty() {
            return Err(ServiceError::NotFound("GitHub secret-scanning endpoint (not configured)"));
        }
        if !self.github_keys.verifies(key_identifier, payload, signature) {
            return Err(ServiceError::Denied(Denied::InsufficientPermission(
                "the report's signature does not verify against GitHub's secret-scanning keys",
            )));
        }
        let tokens: Vec<ReportedToken> = serde_json::from_slice(payload)
            .map_err(|_| ServiceError::invalid("the report must be a JSON array of {token, type, url, source}"))?;
        if tokens.is_empty() || tokens.len() > MAX_GITHUB_TOKENS {
            return Err(ServiceError::invalid(format!("a report holds 1 to {MAX_GITHUB_TOKENS} tokens")));
        }
        let mut labels = Vec::with_capacity(tokens.len());
        for reported in &tokens {
            let token = reported.token.trim();
            let real = match latchkey_core::key_format::lookup_hash(token) {
                Ok(hash) => self.store.find_key_by_hash(&hash).await?.is_some(),
                Err(_) => false,
            };
            if real {
                let source = format!("GitHub secret scanning: {}", reported.url.as_deref().unwrap_or("(no url)"));
                // Unthrottled (no reporter address): the signature says it is GitHub.
                self.leaks().report(&[token.to_owned()], &source, None).await?;
            }
            labels.push(TokenLabel {
                token_hash: hex(&Sha256::digest(token.as_bytes())),
                token_type: reported.token_type.clone(),
                label: if real { "true_positive" } else { "false_positive" },
            });
        }
        Ok(labels)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
