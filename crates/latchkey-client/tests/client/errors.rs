//! `ClientError` carries what Latchkey said (status, code, message, `Retry-After`), or
//! says that Latchkey could not be asked.

use crate::servers::{spawn_latchkey, spawn_latchkey_with};
use latchkey_client::{ApiKey, Client, ClientError, NewKey, Permission, VerifyRequest};
use latchkey_server::throttle::ThrottleConfig;
use latchkey_server::ServerConfig;
use reqwest::StatusCode;

#[tokio::test]
async fn a_refused_call_carries_latchkeys_status_code_and_message() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;

    let error = latchkey.anonymous.with_key(reader.key).sites().create("Shop").await.unwrap_err();
    let ClientError::Api { status, code, message, retry_after } = &error else {
        panic!("not Latchkey's error: {error}")
    };
    assert_eq!((*status, code.as_str()), (StatusCode::FORBIDDEN, "insufficient_permission"));
    assert!(!message.is_empty());
    assert_eq!(*retry_after, None);
}

#[tokio::test]
async fn blocking_the_last_master_key_is_refused_as_last_master() {
    let latchkey = spawn_latchkey().await;
    let master_id = latchkey.master.whoami().await.unwrap().id;

    let error = latchkey.master.keys().block(&master_id).await.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(StatusCode::CONFLICT), Some("last_master")), "{error}");
}

#[tokio::test]
async fn a_key_name_out_of_bounds_is_refused_as_validation_failed() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;

    let error = latchkey.master.keys().create(&NewKey::new("", Permission::Read).for_site(&site)).await.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(StatusCode::UNPROCESSABLE_ENTITY), Some("validation_failed")));
}

#[tokio::test]
async fn an_unknown_key_calling_the_api_is_refused_as_invalid_api_key() {
    let latchkey = spawn_latchkey().await;
    let error = latchkey.anonymous.with_key("lk_not_a_key").whoami().await.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(StatusCode::UNAUTHORIZED), Some("invalid_api_key")));
}

#[tokio::test]
async fn a_throttled_verification_is_an_error_that_says_when_to_retry() {
    let mut config = ServerConfig::default();
    config.service.failure_throttle = ThrottleConfig { max_failures: 2, window_seconds: 60 };
    let latchkey = spawn_latchkey_with(config).await;

    let guess = VerifyRequest::new(ApiKey::new("lk_guessed"));
    for _ in 0..2 {
        assert!(!latchkey.anonymous.verify(&guess).await.unwrap().valid);
    }
    let error = latchkey.anonymous.verify(&guess).await.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(StatusCode::TOO_MANY_REQUESTS), Some("rate_limited")));
    assert!(error.retry_after().is_some_and(|wait| wait.as_secs() >= 1), "{error:?}");
}

#[tokio::test]
async fn a_latchkey_that_cannot_be_reached_is_a_transport_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);

    let error = Client::new(&closed).unwrap().health().await.unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
    assert_eq!(error.code(), None);
}

#[tokio::test]
async fn an_error_never_shows_the_key_it_was_called_with() {
    let latchkey = spawn_latchkey().await;
    let key = "lk_0000000000000000000000000000000000000000000000000";
    let error = latchkey.anonymous.with_key(key).whoami().await.unwrap_err();
    assert!(!format!("{error} {error:?}").contains(key), "{error:?}");
}
