//! `client.verify`: Latchkey's verdict on a key, read into `VerifyAnswer`.

use crate::servers::spawn_latchkey;
use latchkey_client::{ApiKey, Credits, NewKey, Permission, VerifyRequest};
use reqwest::StatusCode;

#[tokio::test]
async fn a_valid_key_is_verified_with_who_it_is() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let created = latchkey
        .create(NewKey::new("CI", Permission::Write).for_site(&site).with_scopes(["flows:execute"]).owned_by("c-42"))
        .await;

    let request = VerifyRequest::new(created.key).require(Permission::Read).require_scopes(["flows:execute"]);
    let answer = latchkey.anonymous.verify(&request.for_site(&site)).await.unwrap();
    assert!(answer.valid, "{answer:?}");
    assert_eq!(answer.code, "valid");
    assert_eq!(answer.refusal(), None);
    let key = answer.key.expect("the key's metadata");
    assert_eq!(key.id, created.record.id);
    assert_eq!(key.site_id.as_ref(), Some(&site));
    assert_eq!(key.permission, Permission::Write);
    assert_eq!(key.scopes, ["flows:execute"]);
    assert_eq!(key.owner_id.as_deref(), Some("c-42"));
}

#[tokio::test]
async fn an_unknown_key_is_refused_as_invalid_api_key_without_metadata() {
    let latchkey = spawn_latchkey().await;
    let answer = latchkey.anonymous.verify(&VerifyRequest::new(ApiKey::new("lk_unknown"))).await.unwrap();
    assert!(!answer.valid);
    let refusal = answer.refusal().unwrap();
    assert_eq!((refusal.code(), refusal.status()), ("invalid_api_key", StatusCode::UNAUTHORIZED));
    assert!(answer.key.is_none());
}

#[tokio::test]
async fn a_key_below_the_required_level_is_refused_but_still_named() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;

    let answer = latchkey.anonymous.verify(&VerifyRequest::new(reader.key).require(Permission::Write)).await.unwrap();
    let refusal = answer.refusal().expect("refused");
    assert_eq!((refusal.code(), refusal.status()), ("insufficient_permission", StatusCode::FORBIDDEN));
    assert_eq!(answer.key.map(|key| key.id), Some(reader.record.id));
}

#[tokio::test]
async fn a_key_of_another_site_is_refused_as_wrong_site() {
    let latchkey = spawn_latchkey().await;
    let (blog, shop) = (latchkey.site("Blog").await, latchkey.site("Shop").await);
    let reader = latchkey.key(Permission::Read, &blog).await;

    let answer = latchkey.anonymous.verify(&VerifyRequest::new(reader.key).for_site(&shop)).await.unwrap();
    assert_eq!(answer.refusal().map(|refusal| refusal.code().to_owned()).as_deref(), Some("wrong_site"));
}

#[tokio::test]
async fn a_blocked_key_is_refused_as_key_blocked() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let reader = latchkey.key(Permission::Read, &site).await;
    latchkey.master.keys().block(&reader.record.id).await.unwrap();

    let answer = latchkey.anonymous.verify(&VerifyRequest::new(reader.key)).await.unwrap();
    assert_eq!(answer.code, "key_blocked");
    assert_eq!(answer.refusal().unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_with_credits_says_what_remains_and_is_refused_at_zero() {
    let latchkey = spawn_latchkey().await;
    let site = latchkey.site("Blog").await;
    let metered = NewKey::new("metered", Permission::Read).for_site(&site);
    let metered = latchkey.create(metered.with_credits(Credits { remaining: 3, refill: None })).await;

    let request = VerifyRequest::new(metered.key).costing(2);
    assert_eq!(latchkey.anonymous.verify(&request).await.unwrap().remaining, Some(1));
    let answer = latchkey.anonymous.verify(&request).await.unwrap();
    assert_eq!(answer.refusal().map(|refusal| refusal.status()), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(answer.code, "usage_exceeded");
}
