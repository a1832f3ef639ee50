//! Latchkey's domain: the key format, the types a key is made of, and the policy that
//! decides who may do what. Nothing here does I/O, awaits, or knows about JSON or HTTP,
//! so every rule can be tested in microseconds and reused by every storage backend.

pub mod audit;
pub mod ids;
pub mod key_changes;
pub mod key_format;
pub mod options;
pub mod policy;
pub mod records;
pub mod refusal;
pub mod values;

pub use audit::{Actor, AuditAction, AuditChange, AuditEvent};
pub use ids::{EventId, KeyId, SiteId};
pub use key_changes::{CreditsEdit, KeyEdit, NewKey};
pub use key_format::{KeyFormat, KeyHash, KeyPrefix, MalformedKey, ParsedKey, SecretKey};
pub use options::{Credits, IpNetwork, KeyOptions, Metadata, OwnerId, RateLimit, Refill, RefillInterval};
pub use policy::{Caller, Denied, Requirement, Unmet};
pub use records::{KeyRecord, KeyState, Site};
pub use refusal::Refusal;
pub use ulid::Ulid;
pub use values::{Description, InvalidValue, KeyName, Permission, Scope, Scopes, SiteName, Status};
