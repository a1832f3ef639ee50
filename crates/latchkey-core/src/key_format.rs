//! The key format: `<prefix>_<secret><checksum>`.
//!
//! * `prefix` names the deployment (`lk` by default), so secret scanners can match it.
//! * `secret` is 32 bytes from the OS CSPRNG, written as exactly 43 base62 characters.
//! * `checksum` is the CRC32 of `<prefix>_<secret>`, written as exactly 6 base62
//!   characters, as GitHub's tokens do. It covers the prefix as well as the secret so
//!   that *any* single-character change, anywhere in the key, is caught before a lookup.
//!
//! Only the SHA-256 of the whole key is ever stored. The secret carries 256 bits of
//! entropy, so a slow password hash would buy nothing and would slow every verification.

use sha2::{Digest, Sha256};
use std::fmt;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SECRET_BYTES: usize = 32;
/// 62^43 > 2^256 > 62^42, so 43 characters hold any 32-byte secret.
pub const SECRET_CHARS: usize = 43;
/// 62^6 > 2^32, so 6 characters hold any CRC32.
pub const CHECKSUM_CHARS: usize = 6;
/// How many leading characters of a key are shown in listings ("Key prefix").
pub const DISPLAY_PREFIX_CHARS: usize = 12;
const MAX_PREFIX_CHARS: usize = 16;

/// A deployment's key prefix: 1 to 16 characters of `[a-z0-9]`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
}

impl KeyFormat {
    pub fn new(prefix: &str) -> Result<Self, MalformedKey> {
        if is_valid_prefix(prefix) {
            Ok(Self { prefix: prefix.to_owned() })
        } else {
            Err(MalformedKey::BadPrefix)
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Makes a new key from the OS CSPRNG.
    pub fn generate(&self) -> SecretKey {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
        self.key_with_secret(bytes)
    }

    fn key_with_secret(&self, bytes: [u8; SECRET_BYTES]) -> SecretKey {
        let mut key = String::with_capacity(self.prefix.len() + 1 + SECRET_CHARS + CHECKSUM_CHARS);
        key.push_str(&self.prefix);
        key.push('_');
        key.push_str(&base62_fixed(&bytes, SECRET_CHARS));
        let checksum = checksum_digits(crc32fast::hash(key.as_bytes()));
        key.push_str(std::str::from_utf8(&checksum).expect("base62 digits are ASCII"));
        SecretKey(key)
    }

    /// A regular expression that matches every key of this deployment (for secret scanners).
    pub fn scanner_regex(&self) -> String {
        format!(r"\b{}_[0-9A-Za-z]{{{}}}\b", self.prefix, SECRET_CHARS + CHECKSUM_CHARS)
    }
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self { prefix: "lk".into() }
    }
}

fn is_valid_prefix(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_PREFIX_CHARS
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why a string is not a well-formed key. Deliberately vague towards callers: the
/// verification API reports all of these as `not_found`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedKey {
    BadPrefix,
    BadLength,
    BadCharacter,
    BadChecksum,
}

impl fmt::Display for MalformedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MalformedKey::BadPrefix => "the key prefix is not valid",
            MalformedKey::BadLength => "the key has the wrong length",
            MalformedKey::BadCharacter => "the key contains a character outside base62",
            MalformedKey::BadChecksum => "the key's checksum does not match",
        })
    }
}

impl std::error::Error for MalformedKey {}

/// A full key. Shown once, in the create or rotate response; never logged or stored.
/// `Debug` is redacted so it cannot slip into a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }

    /// The first characters, stored at creation to identify the key in listings.
    pub fn display_prefix(&self) -> KeyPrefix {
        KeyPrefix(self.0.chars().take(DISPLAY_PREFIX_CHARS).collect())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}…)", self.display_prefix().as_str())
    }
}

/// A presented key that passed the format and checksum checks; it may still be unknown.
#[derive(Debug)]
pub struct ParsedKey<'a>(&'a str);

impl<'a> ParsedKey<'a> {
    /// Checks shape and checksum without touching any store: a typo'd or truncated key
    /// is rejected here, before it can cost a cache or database lookup.
    pub fn parse(candidate: &'a str) -> Result<Self, MalformedKey> {
        let (prefix, rest) = candidate.rsplit_once('_').ok_or(MalformedKey::BadPrefix)?;
        if !is_valid_prefix(prefix) {
            return Err(MalformedKey::BadPrefix);
        }
        if rest.len() != SECRET_CHARS + CHECKSUM_CHARS {
            return Err(MalformedKey::BadLength);
        }
        if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedKey::BadCharacter);
        }
        let (body, checksum) = candidate.split_at(candidate.len() - CHECKSUM_CHARS);
        // On the hot path: compare against digits built on the stack, no allocation.
        if checksum.as_bytes() != checksum_digits(crc32fast::hash(body.as_bytes())) {
            return Err(MalformedKey::BadChecksum);
        }
        Ok(Self(candidate))
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0)
    }
}

/// How long a key issued by another system may be, for keys brought in by an import:
/// any printable ASCII characters in this range.
pub const IMPORTED_KEY_CHARS: std::ops::RangeInclusive<usize> = 16..=256;

/// The hash to look a presented key up by, or why it cannot be a key at all.
///
/// A key in Latchkey's own shape (`<prefix>_` and 49 base62 characters) must pass its
/// checksum, so a mistyped key costs no lookup. Anything else of 16 to 256 printable
/// ASCII characters may be a key imported from another system (`ghp_…`, `sk_live_…`),
/// which has no checksum to check: it is looked up by its SHA-256, and the negative cache
/// and the failure throttle protect the store from guesses.
pub fn lookup_hash(candidate: &str) -> Result<KeyHash, MalformedKey> {
    // One pass over the shape: `parse` fails with `BadChecksum` exactly when the candidate
    // has the native shape (the checks of `has_native_shape`) and a wrong checksum.
    match ParsedKey::parse(candidate) {
        Ok(parsed) => return Ok(parsed.hash()),
        Err(MalformedKey::BadChecksum) => return Err(MalformedKey::BadChecksum),
        Err(_) => {}
    }
    if !IMPORTED_KEY_CHARS.contains(&candidate.len()) {
        return Err(MalformedKey::BadLength);
    }
    if !candidate.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(MalformedKey::BadCharacter);
    }
    Ok(KeyHash::of(candidate))
}

/// Whether `candidate` looks like a key Latchkey issued: `<prefix>_` and 49 base62 characters.
pub fn has_native_shape(candidate: &str) -> bool {
    candidate.rsplit_once('_').is_some_and(|(prefix, rest)| {
        is_valid_prefix(prefix)
            && rest.len() == SECRET_CHARS + CHECKSUM_CHARS
            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// SHA-256 of a full key: the only form in which a key is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only a few bytes: enough to correlate in a debugger, useless to an attacker.
        write!(f, "KeyHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// The stored, displayable start of a key (e.g. `lk_3fZk9QaBc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn from_stored(prefix: String) -> Self {
        Self(prefix)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A CRC32 as exactly 6 base62 digits (62^6 > 2^32).
fn checksum_digits(crc: u32) -> [u8; CHECKSUM_CHARS] {
    let mut number = u64::from(crc);
    let mut digits = [b'0'; CHECKSUM_CHARS];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(number % 62) as usize];
        number /= 62;
    }
    digits
}

/// Big-endian bytes as base62, left-padded with '0' to exactly `width` characters.
fn base62_fixed(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let accumulator = (remainder << 8) | u32::from(*byte);
            *byte = (accumulator / 62) as u8;
            remainder = accumulator % 62;
        }
        *slot = BASE62[remainder as usize];
    }
    debug_assert!(number.iter().all(|b| *b == 0), "width too small for the number");
    String::from_utf8(digits).expect("base62 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_key_has_the_documented_shape_and_parses() {
        let key = KeyFormat::default().generate();
        let text = key.expose();
        assert!(text.starts_with("lk_"));
        assert_eq!(text.len(), 3 + SECRET_CHARS + CHECKSUM_CHARS);
        assert!(ParsedKey::parse(text).is_ok());
        assert_eq!(key.display_prefix().as_str(), &text[..12]);
    }

    #[test]
    fn a_custom_prefix_is_used_and_bad_prefixes_are_refused() {
        let format = KeyFormat::new("forja").unwrap();
        assert!(format.generate().expose().starts_with("forja_"));
        for bad in ["", "Forja", "1abc", "a_b", "abcdefghijklmnopq", "ab-c"] {
            assert_eq!(KeyFormat::new(bad), Err(MalformedKey::BadPrefix), "{bad:?}");
        }
    }

    #[test]
    fn a_truncated_key_is_rejected_before_any_lookup() {
        let key = KeyFormat::default().generate();
        let text = key.expose();
        assert_eq!(ParsedKey::parse(&text[..text.len() - 1]).unwrap_err(), MalformedKey::BadLength);
        assert!(ParsedKey::parse("").is_err());
        assert!(ParsedKey::parse("not a key").is_err());
    }

    #[test]
    fn a_mistyped_native_key_is_refused_before_any_lookup_but_a_foreign_key_is_looked_up() {
        let key = KeyFormat::default().generate();
        assert_eq!(lookup_hash(key.expose()), Ok(key.hash()));
        let mut mistyped = key.expose().as_bytes().to_vec();
        mistyped[10] = if mistyped[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(lookup_hash(std::str::from_utf8(&mistyped).unwrap()), Err(MalformedKey::BadChecksum));
        let github_style = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        assert_eq!(lookup_hash(github_style), Ok(KeyHash::of(github_style)));
        assert_eq!(lookup_hash("short_key"), Err(MalformedKey::BadLength));
        assert_eq!(lookup_hash(&"x".repeat(257)), Err(MalformedKey::BadLength));
        assert_eq!(lookup_hash("sixteen\tcharacters"), Err(MalformedKey::BadCharacter));
        assert_eq!(lookup_hash("sixteen-characters-é"), Err(MalformedKey::BadCharacter));
    }

    #[test]
    fn the_zero_secret_encodes_to_zeros_and_the_max_secret_fits() {
        let format = KeyFormat::default();
        let zero = format.key_with_secret([0; 32]);
        assert!(zero.expose()[3..3 + SECRET_CHARS].bytes().all(|b| b == b'0'));
        let max = format.key_with_secret([0xff; 32]);
        assert!(ParsedKey::parse(max.expose()).is_ok());
    }

    #[test]
    fn generated_keys_never_collide_in_a_million() {
        let format = KeyFormat::default();
        let mut seen = std::collections::HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            assert!(seen.insert(format.generate().hash()));
        }
    }

    #[test]
    fn checksum_digits_agree_with_the_general_base62_encoding() {
        for crc in [0u32, 1, 61, 62, 0xdead_beef, u32::MAX] {
            assert_eq!(checksum_digits(crc).to_vec(), base62_fixed(&crc.to_be_bytes(), CHECKSUM_CHARS).into_bytes());
        }
    }

    #[test]
    fn the_scanner_regex_names_the_prefix_and_length() {
        assert_eq!(KeyFormat::default().scanner_regex(), r"\blk_[0-9A-Za-z]{49}\b");
    }

    proptest! {
        #[test]
        fn every_single_character_change_fails_the_checksum(
            secret in any::<[u8; 32]>(),
            position in 0usize..52,
            replacement in proptest::sample::select(BASE62.iter().copied().chain(*b"_-.").collect::<Vec<u8>>()),
        ) {
            let key = KeyFormat::default().key_with_secret(secret);
            let mut bytes = key.expose().as_bytes().to_vec();
            prop_assume!(bytes[position] != replacement);
            bytes[position] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(ParsedKey::parse(&changed).is_err(), "{changed} was accepted");
        }

        #[test]
        fn every_key_round_trips_through_parse(secret in any::<[u8; 32]>()) {
            let key = KeyFormat::default().key_with_secret(secret);
            let parsed = ParsedKey::parse(key.expose()).unwrap();
            prop_assert_eq!(parsed.hash(), key.hash());
        }
    }
}
