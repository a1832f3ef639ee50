//! Key parsing never panics, and whatever parses has a valid checksum: changing any one
//! character of it makes it fail to parse.
#![no_main]

use latchkey_core::ParsedKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ParsedKey::parse(text).is_ok() {
        let mut changed = text.as_bytes().to_vec();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(changed).expect("ASCII stays UTF-8");
        assert!(ParsedKey::parse(&changed).is_err(), "a one-character change still parsed: {changed:?}");
    }
});
