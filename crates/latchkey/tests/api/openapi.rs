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
    ("post", "/api/v1/leaks"),
    ("post", "/api/v1/verify"),
    ("get", "/api/v1/auth"),
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
