//! The patterns in docs/SECRET_SCANNING.md really find real keys.

use latchkey_core::KeyFormat;

fn documented_block(marker: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/SECRET_SCANNING.md")).unwrap();
    let after = doc.split(marker).nth(1).unwrap_or_else(|| panic!("{marker} is missing from the doc"));
    let block = after.split("```").nth(1).unwrap();
    block.split_once('\n').unwrap().1.to_owned()
}

#[test]
fn the_documented_patterns_find_real_keys() {
    let pattern = documented_block("<!-- scanner-regex -->").trim().to_owned();
    assert_eq!(pattern, KeyFormat::default().scanner_regex(), "the doc and the code agree");
    let rule = documented_block("<!-- gitleaks-rule -->");
    let gitleaks = rule.split("'''").nth(1).expect("a regex = '''…''' line");
    for expression in [pattern.as_str(), gitleaks] {
        let regex = regex::Regex::new(expression).unwrap();
        for _ in 0..1000 {
            let key = KeyFormat::default().generate();
            let leaked = format!("export API_KEY=\"{}\"\n", key.expose());
            let found = regex.find(&leaked).map(|m| m.as_str());
            assert_eq!(found, Some(key.expose()), "{expression} missed a key");
        }
        let key = KeyFormat::default().generate();
        assert!(!regex.is_match(&key.expose()[..key.expose().len() - 1]), "a truncated key does not match");
        assert!(!regex.is_match(&format!("{}x", key.expose())), "a longer token does not match");
    }
}
