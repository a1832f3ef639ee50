//! A Rust client for Latchkey: typed calls for the whole management API and for
//! verification, and (feature `middleware`, on by default) a tower layer with an axum
//! extractor for services that want Latchkey to guard their routes.
//!
//! ```no_run
//! # async fn run() -> Result<(), latchkey_client::ClientError> {
//! use latchkey_client::{ApiKey, Client, NewKey, Permission};
//!
//! let latchkey = Client::new("http://127.0.0.1:8080")?.with_key(ApiKey::new("lk_..."));
//! let site = latchkey.sites().create("Blog").await?;
//! let created = latchkey.keys().create(&NewKey::new("Astro frontend", Permission::Read).for_site(&site.id)).await?;
//! println!("store this once: {}", created.key.expose());
//! # Ok(()) }
//! ```
//!
//! The crate speaks Latchkey's JSON over HTTP and depends on none of the server's crates,
//! so a service that uses it does not pull the server in. Responses are read tolerantly
//! (unknown fields are ignored) so a newer server does not break an older client.

pub mod audit;
mod client;
mod error;
pub mod keys;
pub mod leaks;
#[cfg(feature = "middleware")]
pub mod middleware;
mod secret;
pub mod sites;
pub mod verify;

pub use audit::{AuditEvent, AuditFilter};
pub use client::{Client, Health, Page, PageRequest};
pub use error::ClientError;
pub use keys::{
    CreatedKey, Credits, Key, KeyFilter, KeyId, KeyStatus, KeyUpdate, KeyUsage, NewKey, Permission, RateLimit,
};
#[cfg(feature = "middleware")]
pub use middleware::{LatchkeyLayer, LatchkeyService, DEFAULT_MAX_STALENESS};
pub use secret::ApiKey;
pub use sites::{Site, SiteId};
pub use verify::{RateLimitStanding, Refusal, VerifiedKey, VerifyAnswer, VerifyRequest};
