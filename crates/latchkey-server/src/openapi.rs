//! The OpenAPI document: what each route's annotation says about its own answers, plus
//! the answers that every route of a kind can give, added here once. A route that takes
//! a key can always answer 401, 403 and 429; a route with a JSON body can always answer
//! 400, 413, 415 and 422. Writing those on each annotation is how they went missing
//! before (schemathesis found 30 undocumented answers), so no annotation repeats them.

use crate::error::ErrorBody;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, Header, ObjectBuilder, OpenApi, Ref, RefOr, Response, Type};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Latchkey", description = "Self-hosted API key management: sites, keys, verification."),
    modifiers(&ApiKeySecurity),
    components(schemas(ErrorBody))
)]
pub(crate) struct ApiDoc;

struct ApiKeySecurity;

impl utoipa::Modify for ApiKeySecurity {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// The answers a kind of route can always give, with the error codes behind each.
const KEYED: &[(&str, &str)] = &[
    ("401", "No key, or a key that is unknown, blocked, expired or not allowed from this address: `missing_api_key`, `invalid_api_key`, `key_blocked`, `key_expired`, `ip_not_allowed`"),
    ("403", "The key may not do this: `insufficient_permission`, `missing_scope`, `wrong_site`"),
    ("429", "The key's rate limit or credits are spent, or this address failed too often: `rate_limited`, `usage_exceeded`; see `Retry-After`"),
    ("503", "The database cannot be reached: `unavailable`"),
];
const JSON_BODY: &[(&str, &str)] = &[
    ("400", "The body is not JSON, or not the expected shape: `malformed_json`"),
    ("413", "The body is larger than the route takes (64 KiB; 8 MiB for an import): `payload_too_large`"),
    ("415", "The body is not sent as `Content-Type: application/json`: `unsupported_media_type`"),
    ("422", "A field has a value that is not allowed, or is unknown: `validation_failed`, `immutable_field`"),
];
const QUERY: &[(&str, &str)] = &[
    ("400", "A query parameter is unknown or not of its type: `invalid_query`"),
    ("422", "A query parameter has a value that is not allowed: `validation_failed`"),
];
const PATH_ID: &[(&str, &str)] = &[("404", "No such object, or not one the key may see: `not_found`")];

/// Adds the answers of each kind to every operation of that kind, keeping what an
/// annotation says itself.
pub(crate) fn add_common_answers(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            for (status, description) in common_answers(operation) {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error_answer(status, description));
            }
        }
    }
}

fn common_answers(operation: &Operation) -> Vec<(&'static str, &'static str)> {
    let takes_key = operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty());
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| parameters.iter().any(|parameter| parameter.parameter_in == place);
    let mut answers = Vec::new();
    for (applies, kind) in [
        (takes_key, KEYED),
        (operation.request_body.is_some(), JSON_BODY),
        (has(ParameterIn::Query), QUERY),
        (has(ParameterIn::Path), PATH_ID),
    ] {
        if applies {
            answers.extend(kind.iter().copied());
        }
    }
    answers
}

fn error_answer(status: &str, description: &str) -> RefOr<Response> {
    let mut answer = Response::new(description);
    answer.content.insert("application/json".to_owned(), Content::new(Some(Ref::from_schema_name("ErrorBody"))));
    if status == "429" {
        let headers = [
            ("Retry-After", Type::Integer, "Seconds until a request may succeed"),
            (
                "RateLimit-Policy",
                Type::String,
                "The limit reached, e.g. `\"key\";q=100;w=60` (draft-ietf-httpapi-ratelimit-headers)",
            ),
            ("RateLimit", Type::String, "Where the client stands, e.g. `\"key\";r=0;t=30`"),
        ];
        for (name, kind, description) in headers {
            let mut header = Header::new(ObjectBuilder::new().schema_type(kind).build());
            header.description = Some(description.to_owned());
            answer.headers.insert(name.to_owned(), header);
        }
    }
    RefOr::T(answer)
}
