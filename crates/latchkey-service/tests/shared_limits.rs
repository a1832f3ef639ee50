//! Rate limits and failure throttling shared through a real Redis by several instances
//! (services on one store, as processes behind a load balancer would be), and what each
//! failure mode does when Redis does not answer. Redis: `LATCHKEY_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`; scripts/install-test-deps starts one.

use latchkey_core::{Caller, KeyName, KeyOptions, NewKey, Permission, RateLimit, Refusal, SecretKey, Site, SiteName};
use latchkey_service::limits::{RedisFailure, SharedLimitsConfig};
use latchkey_service::{Check, ManualClock, Presented, Service, ServiceConfig, ServiceError, ThrottleConfig, Verdict};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

fn redis_url() -> String {
    std::env::var("LATCHKEY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Redis keys of this test only, so tests never count each other's requests.
fn fresh_prefix() -> String {
    format!("latchkey-test-{}", latchkey_core::Ulid::new())
}

struct Instances {
    services: Vec<Service>,
    site: Site,
    _dir: tempfile::TempDir,
}

/// `count` instances on one SQLite store, each with its own memory and the same Redis.
async fn instances(count: usize, limits: SharedLimitsConfig, failure_limit: u32) -> Instances {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let store: latchkey_store::SharedStore =
        Arc::new(latchkey_sqlite::SqliteStore::open(path.to_str().unwrap()).await.unwrap());
    let clock = Arc::new(ManualClock::starting_now());
    let config = ServiceConfig {
        failure_throttle: ThrottleConfig { max_failures: failure_limit, window_seconds: 60 },
        shared_limits: Some(limits),
        ..ServiceConfig::default()
    };
    let services: Vec<Service> =
        (0..count).map(|_| Service::new(store.clone(), config.clone(), clock.clone())).collect();
    let site = services[0].sites().create(&Caller::system(), SiteName::parse("Blog").unwrap()).await.unwrap();
    Instances { services, site, _dir: dir }
}

impl Instances {
    async fn key(&self, ratelimit: Option<RateLimit>) -> SecretKey {
        let new = NewKey {
            options: KeyOptions { ratelimit, ..KeyOptions::default() },
            ..NewKey::plain(KeyName::parse("limited").unwrap(), Permission::Read, Some(self.site.id.clone()))
        };
        self.services[0].keys().create(&Caller::system(), new).await.unwrap().1
    }
}

fn from(ip: [u8; 4]) -> Check {
    Check::any_valid_key(Some(IpAddr::V4(Ipv4Addr::from(ip))))
}

async fn assert_redis_answers() {
    let client = redis::Client::open(redis_url()).unwrap();
    let answered =
        async { client.get_multiplexed_async_connection().await?.send_packed_command(&redis::cmd("PING")).await };
    if let Err(error) = answered.await {
        panic!("these tests need Redis at {} ({error}); scripts/install-test-deps starts one", redis_url());
    }
}

#[tokio::test]
async fn three_instances_admit_exactly_a_keys_limit_between_them() {
    assert_redis_answers().await;
    let mut config = SharedLimitsConfig::new(redis_url()).unwrap();
    config.key_prefix = fresh_prefix();
    let world = instances(3, config, 60).await;
    let key = world.key(Some(RateLimit::new(5, 60).unwrap())).await;
    let mut allowed = 0;
    let mut refusals = Vec::new();
    for round in 0..9 {
        let instance = &world.services[round % 3];
        match instance.verify(Presented::Key(key.expose()), &from([10, 0, 0, 1])).await.unwrap() {
            Verdict::Allowed { window, .. } => {
                allowed += 1;
                assert_eq!(window.unwrap().remaining, 5 - allowed, "the window left after {allowed} admitted");
            }
            Verdict::Refused { refusal, .. } => refusals.push(refusal),
        }
    }
    assert_eq!(allowed, 5);
    assert_eq!(refusals.len(), 4);
    for refusal in refusals {
        let Refusal::RateLimited { retry_after_seconds, limit } = refusal else { panic!("{refusal:?}") };
        assert!((1..=60).contains(&retry_after_seconds), "{retry_after_seconds}");
        assert_eq!(limit, RateLimit::new(5, 60).unwrap());
    }
}

#[tokio::test]
async fn guesses_spread_over_instances_share_one_failure_budget_per_address() {
    assert_redis_answers().await;
    let mut config = SharedLimitsConfig::new(redis_url()).unwrap();
    config.key_prefix = fresh_prefix();
    let world = instances(3, config, 4).await;
    let mut answers = Vec::new();
    for guess in 0..6 {
        let instance = &world.services[guess % 3];
        let verdict = instance.verify(Presented::Key("lk_guessed"), &from([192, 0, 2, 7])).await.unwrap();
        answers.push(verdict.allowed().err().expect("a guess is refused").code());
    }
    assert_eq!(answers[..4], ["invalid_api_key"; 4]);
    assert_eq!(answers[4..], ["rate_limited"; 2], "the budget of 4 is spent whichever instance counted it");
    // Another address has a budget of its own.
    let other = world.services[0].verify(Presented::Key("lk_guessed"), &from([192, 0, 2, 8])).await.unwrap();
    assert_eq!(other.allowed().err(), Some(Refusal::InvalidKey));
}

fn unreachable_redis(on_failure: RedisFailure) -> SharedLimitsConfig {
    // Port 1 on loopback: nothing listens, so the connection is refused at once.
    let mut config = SharedLimitsConfig::new("redis://127.0.0.1:1").unwrap();
    config.on_failure = on_failure;
    config
}

#[tokio::test]
async fn with_redis_down_and_failing_open_each_instance_still_counts_limits_itself_and_warns() {
    let world = instances(1, unreachable_redis(RedisFailure::Open), 60).await;
    let service = &world.services[0];
    assert!(service.warnings().is_empty(), "nothing is known to be wrong before a call fails");
    let key = world.key(Some(RateLimit::new(2, 60).unwrap())).await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        let verdict = service.verify(Presented::Key(key.expose()), &from([10, 0, 0, 1])).await.unwrap();
        codes.push(verdict.allowed().map(|_| "valid").unwrap_or_else(|refusal| refusal.code()));
    }
    assert_eq!(codes, ["valid", "valid", "rate_limited"]);
    assert_eq!(service.warnings().len(), 1, "{:?}", service.warnings());
    assert_eq!(service.redis_errors(), Some(1), "after a failure Redis is left alone for a second");
    assert_eq!(service.limits_mode(), "redis (on failure: open)");
}

#[tokio::test]
async fn with_redis_down_and_failing_closed_a_rate_limited_key_gets_503_but_others_never_touch_redis() {
    let world = instances(1, unreachable_redis(RedisFailure::Closed), 60).await;
    let service = &world.services[0];
    let limited = world.key(Some(RateLimit::new(100, 60).unwrap())).await;
    let unlimited = world.key(None).await;
    let answer = service.verify(Presented::Key(limited.expose()), &from([10, 0, 0, 1])).await;
    assert!(matches!(answer, Err(ServiceError::Unavailable(_))), "{:?}", answer.map(|v| v.allowed().is_ok()));
    let unlimited_answer = service.verify(Presented::Key(unlimited.expose()), &from([10, 0, 0, 1])).await.unwrap();
    assert!(unlimited_answer.allowed().is_ok(), "a key without a rate limit needs no counter");
    assert_eq!(service.redis_errors(), Some(1), "only the rate-limited key asked Redis");
}
