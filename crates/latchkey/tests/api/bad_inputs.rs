//! The bad-input catalogue (docs/RELIABILITY.md): every bad input tried against the real
//! server, with the answer it gets. One test per row, so a regression names the input.

use crate::helpers::{spawn_app_with_sites, TestApp};
use reqwest::{Method, RequestBuilder};

/// A row: what is sent, and the status and error code expected (`""` for a success).
struct Row {
    method: Method,
    path: &'static str,
    /// Raw body bytes, sent as JSON; `{site}` is replaced by a real site id.
    body: Option<Vec<u8>>,
    /// Extra headers (the Master key is always sent unless a row sends its own).
    headers: Vec<(&'static str, String)>,
    expect: (u16, &'static str),
}

async fn send(app: &TestApp, site: &str, row: Row) -> (u16, String) {
    let mut request: RequestBuilder = app.client.request(row.method, format!("{}{}", app.address, row.path));
    if !row.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("x-api-key")) {
        request = request.header("X-API-Key", &app.master_key);
    }
    for (name, value) in row.headers {
        request = request.header(name, value);
    }
    if let Some(body) = row.body {
        let text = String::from_utf8_lossy(&body).replace("{site}", site);
        let bytes = if text.contains('\u{FFFD}') { body } else { text.into_bytes() };
        request = request.header("content-type", "application/json").body(bytes);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
    (status, code)
}

fn key_body(extra: &str) -> Option<Vec<u8>> {
    Some(format!(r#"{{"name": "n", "permission": "read", "site_id": "{{site}}"{extra}}}"#).into_bytes())
}

macro_rules! catalogue {
    ($($name:ident: $row:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (app, [site]) = spawn_app_with_sites(["catalogue"]).await;
                let row: Row = $row;
                let expect = row.expect;
                let got = send(&app, &site, row).await;
                assert_eq!((got.0, got.1.as_str()), expect);
            }
        )*
    };
}

fn get(path: &'static str, expect: (u16, &'static str)) -> Row {
    Row { method: Method::GET, path, body: None, headers: vec![], expect }
}

fn post(path: &'static str, body: Option<Vec<u8>>, expect: (u16, &'static str)) -> Row {
    Row { method: Method::POST, path, body, headers: vec![], expect }
}

catalogue! {
    a_body_over_64_kib_is_413: post("/api/v1/sites", Some(format!(r#"{{"name": "{}"}}"#, "x".repeat(70_000)).into_bytes()), (413, "payload_too_large"));
    a_body_that_is_not_utf8_is_400: post("/api/v1/sites", Some(b"{\"name\": \"\xff\xfe\"}".to_vec()), (400, "malformed_json"));
    a_body_that_is_not_json_is_400: post("/api/v1/sites", Some(b"{name".to_vec()), (400, "malformed_json"));
    a_duplicate_json_field_is_422: post("/api/v1/sites", Some(br#"{"name": "a", "name": "b"}"#.to_vec()), (422, "validation_failed"));
    an_unknown_json_field_is_422: post("/api/v1/sites", Some(br#"{"name": "a", "admin": true}"#.to_vec()), (422, "validation_failed"));
    deeply_nested_json_is_422: post("/api/v1/sites", Some(format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes()), (422, "validation_failed"));
    a_name_over_100_characters_is_422: post("/api/v1/sites", Some(format!(r#"{{"name": "{}"}}"#, "n".repeat(101)).into_bytes()), (422, "validation_failed"));
    a_name_with_a_nul_is_422: post("/api/v1/sites", Some(br#"{"name": "a\u0000b"}"#.to_vec()), (422, "validation_failed"));
    a_name_with_a_bidi_override_is_422: post("/api/v1/sites", Some("{\"name\": \"a\u{202E}b\"}".as_bytes().to_vec()), (422, "validation_failed"));
    an_sql_looking_name_is_stored_as_text: post("/api/v1/keys", Some(br#"{"name": "x'); DROP TABLE keys;--", "permission": "read", "site_id": "{site}"}"#.to_vec()), (201, ""));
    ten_thousand_scopes_do_not_fit_in_a_body: post("/api/v1/keys", key_body(&format!(r#", "scopes": [{}]"#, (0..10_000).map(|i| format!("\"a:b{i}\"")).collect::<Vec<_>>().join(","))), (413, "payload_too_large"));
    sixty_five_scopes_are_422: post("/api/v1/keys", key_body(&format!(r#", "scopes": [{}]"#, (0..65).map(|i| format!("\"a:b{i}\"")).collect::<Vec<_>>().join(","))), (422, "validation_failed"));
    a_negative_credit_balance_is_422: post("/api/v1/keys", key_body(r#", "credits": {"remaining": -1}"#), (422, "validation_failed"));
    a_credit_balance_over_2_63_is_422: post("/api/v1/keys", key_body(r#", "credits": {"remaining": 9223372036854775808}"#), (422, "validation_failed"));
    the_largest_credit_balance_is_accepted: post("/api/v1/keys", key_body(r#", "credits": {"remaining": 9223372036854775807}"#), (201, ""));
    a_rate_limit_beyond_u32_is_422: post("/api/v1/keys", key_body(r#", "ratelimit": {"limit": 99999999999, "window_seconds": 60}"#), (422, "validation_failed"));
    an_expiry_in_the_past_is_422: post("/api/v1/keys", key_body(r#", "expires_at": "2001-01-01T00:00:00Z""#), (422, "validation_failed"));
    a_tampered_cursor_is_an_empty_page: get("/api/v1/keys?cursor=%27%3B%20DROP%20TABLE%20keys", (200, ""));
    a_page_size_beyond_u32_is_400: get("/api/v1/keys?limit=99999999999", (400, "invalid_query"));
    a_page_size_over_200_is_422: get("/api/v1/keys?limit=201", (422, "validation_failed"));
    a_path_that_is_not_utf8_is_400: get("/api/v1/keys/%FF%FE", (400, "bad_request"));
    an_unknown_query_parameter_is_400: get("/api/v1/keys?sitee=x", (400, "invalid_query"));
    two_api_key_headers_are_refused: Row {
        method: Method::GET, path: "/api/v1/sites", body: None,
        headers: vec![("x-api-key", "lk_first".into()), ("x-api-key", "lk_second".into())],
        expect: (401, "invalid_api_key"),
    };
    an_empty_api_key_header_is_a_missing_key: Row {
        method: Method::GET, path: "/api/v1/sites", body: None, headers: vec![("x-api-key", " ".into())],
        expect: (401, "missing_api_key"),
    };
    headers_over_64_kib_are_431: Row {
        method: Method::GET, path: "/api/v1/sites", body: None, headers: vec![("x-pad", "a".repeat(100_000))],
        expect: (431, ""),
    };
}
