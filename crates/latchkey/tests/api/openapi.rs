//! The OpenAPI document describes every route the server answers.

use crate::helpers::spawn_app;
use reqwest::StatusCode;

/// Every route of the API. Adding a route without adding it here and to the document
/// fails this test.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/api/v1/sites"),
    ("post", "/api/v1/sites"),
    ("get", "/api/v1/sites/{id}"),
    ("patch", "/api/v1/sites/{id}"),
    ("delete", "/api/v1/sites/{id}"),
    ("get", "/api/v1/keys"),
    ("post", "/api/v1/keys"),
    ("get", "/api/v1/keys/{id}"),
    ("patch", "/api/v1/keys/{id}"),
    ("delete", "/api/v1/keys/{id}"),
    ("post", "/api/v1/keys/{id}/block"),
    ("post", "/api/v1/keys/{id}/unblock"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/keys/{id}/usage"),
    ("post", "/api/v1/keys/{id}/rotate"),
    ("post", "/api/v1/keys/import"),
    ("post", "/api/v1/leaks"),
    ("post", "/api/v1/verify"),
    ("get", "/api/v1/auth"),
    ("post", "/api/v1/leaks/github"),
    ("get", "/api/v1/webhooks"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{id}"),
    ("patch", "/api/v1/webhooks/{id}"),
    ("delete", "/api/v1/webhooks/{id}"),
    ("post", "/api/v1/webhooks/{id}/rotate-secret"),
    ("post", "/api/v1/webhooks/{id}/test"),
    ("get", "/api/v1/webhooks/{id}/deliveries"),
    ("get", "/api/v1/events"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_nothing_else() {
    let app = spawn_app().await;
    let (status, document) = app.call(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut expected: Vec<_> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
    // Each documented route is really served (a missing one would be our 404 "no such route").
    for (method, path) in ROUTES {
        let path = path.replace("{id}", "x");
        let (status, body) = app.call(method.parse().unwrap(), &path, None, None).await;
        assert_ne!(
            body["error"]["message"], "no such route",
            "{method} {path} is documented but not served ({status})"
        );
    }
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());
}

/// `docs/openapi.json` is what clients generate code from: it must be the document the
/// server serves. Regenerate it with `cargo run -p latchkey -- openapi > docs/openapi.json`.
#[test]
fn the_committed_openapi_document_is_the_one_the_code_describes() {
    let committed = include_str!("../../../../docs/openapi.json");
    let committed: serde_json::Value = serde_json::from_str(committed).expect("docs/openapi.json is JSON");
    let current = serde_json::to_value(latchkey_server::openapi_document()).unwrap();
    assert!(
        committed == current,
        "docs/openapi.json is out of date: run `cargo run -p latchkey -- openapi > docs/openapi.json`"
    );
}

/// Every operation documents the errors that its kind of route can answer, so a client
/// generated from the document handles them (schemathesis checks the same from outside).
#[test]
fn every_keyed_operation_documents_401_403_and_429_and_every_body_400_413_415_422() {
    let document = serde_json::to_value(latchkey_server::openapi_document()).unwrap();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let mut expected = Vec::new();
            if operation.get("security").is_some() {
                expected.extend(["401", "403", "429"]);
            }
            if operation.get("requestBody").is_some() {
                expected.extend(["400", "413", "415", "422"]);
            }
            for status in expected {
                let answer = &responses.get(status).unwrap_or_else(|| panic!("{method} {path} lacks {status}"));
                let schema = &answer["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
            }
        }
    }
}
