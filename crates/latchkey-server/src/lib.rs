//! Latchkey's HTTP front-ends over the service: the JSON management API, the verification
//! endpoints, the dashboard, and the server's lifecycle (background flushes, graceful
//! shutdown). Only this crate knows about JSON shapes and status codes; every operation
//! and every key check goes through `latchkey_service::Service`.

pub mod config;
pub mod connections;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod observe;
mod openapi;
pub mod response_guards;
pub mod routes;
pub mod state;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::Json;
use std::future::Future;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::ServerConfig;
pub use latchkey_service::{clock, throttle, Clock, ManualClock, SystemClock};

/// Request bodies above this are refused with 413 before they are read in full.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route with its OpenAPI description: registering a route here is what documents it.
fn api_routes() -> OpenApiRouter<AppState> {
    use routes::{audit, events, import, keys, leaks, sites, verify, webhooks};
    OpenApiRouter::new()
        .routes(routes!(sites::list_sites, sites::create_site))
        .routes(routes!(sites::get_site, sites::update_site, sites::delete_site))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::get_key, keys::update_key, keys::delete_key))
        .routes(routes!(keys::block_key))
        .routes(routes!(keys::unblock_key))
        .routes(routes!(keys::key_usage))
        .routes(routes!(keys::rotate_key))
        .routes(import::route())
        .routes(routes!(leaks::report_leak))
        .routes(routes!(leaks::report_github_leak))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::get_webhook, webhooks::update_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::rotate_webhook_secret))
        .routes(routes!(webhooks::test_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(events::follow_events))
        .routes(routes!(keys::whoami))
        .routes(routes!(audit::list_audit))
        .routes(routes!(verify::verify_key))
        .routes(routes!(verify::forward_auth))
}

/// The whole application: routes, OpenAPI document, JSON fallbacks, body limit.
pub fn app(state: AppState) -> axum::Router {
    let (router, mut openapi) = documented_routes().split_for_parts();
    openapi::add_common_answers(&mut openapi);
    let openapi = std::sync::Arc::new(openapi);
    let router = if state.config.metrics_on_api_listener {
        router.route("/metrics", axum::routing::get(observe::metrics))
    } else {
        router
    };
    router
        .merge(dashboard::routes())
        .route("/api/v1/openapi.json", axum::routing::get(move || async move { Json(openapi.as_ref().clone()) }))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not accept that method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(response_guards::GuardLayer)
        .layer(observe::ObserveLayer::new(state.http_stats.clone()))
        .with_state(state)
}

/// The OpenAPI document, for tests and for `latchkey openapi`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut openapi = documented_routes().into_openapi();
    openapi::add_common_answers(&mut openapi);
    openapi
}

fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", api_routes())
        .routes(routes!(routes::meta::healthz))
}

/// Serves until `shutdown` resolves, then finishes in-flight requests and writes the
/// last-used times and usage counts still in memory, so a graceful stop loses nothing.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.service.follow_other_instances().await.map_err(std::io::Error::other)?;
    let (stop_flusher, stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(write_bookkeeping_periodically(state.clone(), stopped.clone()));
    // Webhook deliveries, expiry reminders and outbox pruning; an event queued meanwhile
    // waits in the outbox for the next start (or another instance).
    let webhook_worker = tokio::spawn(state.service.clone().run_webhook_worker(stopped));
    let served = connections::serve_connections(listener, app(state.clone()), state.config.connections, shutdown).await;
    // Not `abort`: a flush in progress holds a batch taken out of memory; let it finish.
    let _ = stop_flusher.send(true);
    let _ = flusher.await;
    let _ = webhook_worker.await;
    if let Err(error) = state.service.write_bookkeeping().await {
        tracing::error!(%error, "could not write last-used times and usage counts at shutdown");
    }
    served
}

/// Serves only `GET /metrics`, for `--metrics-listen`: metrics on an address of their own.
pub async fn serve_metrics(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let router = axum::Router::new().route("/metrics", axum::routing::get(observe::metrics)).with_state(state);
    axum::serve(listener, router).await
}

async fn write_bookkeeping_periodically(state: AppState, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(state.config.last_used_flush_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick of an interval fires at once; the first write is due one interval on.
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        if let Err(error) = state.sessions.prune().await {
            tracing::warn!(%error, "could not prune idle dashboard sessions; will retry");
        }
        if let Err(error) = state.service.write_bookkeeping().await {
            tracing::warn!(%error, "could not write last-used times and usage counts; will retry");
        }
    }
}
