//! An example service that Latchkey guards: a small content API where reading articles
//! needs a Read key and writing one needs a Write key (the Forja seed's table: Read <
//! Write < Admin < Master). Articles belong to the site of the key that wrote them.
//!
//! ```sh
//! LATCHKEY_URL=http://127.0.0.1:8080 CONTENT_API_LISTEN=127.0.0.1:3000 \
//!     cargo run -p latchkey-client --example content_api
//! curl -H "X-API-Key: $READ_KEY" http://127.0.0.1:3000/articles
//! curl -H "X-API-Key: $WRITE_KEY" -H 'content-type: application/json' \
//!      -d '{"title": "Hello", "body": "First post"}' http://127.0.0.1:3000/articles
//! ```
//!
//! The integration tests include this file (`tests/client/main.rs`), so they run this code.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_client::{Client, KeyId, LatchkeyLayer, Permission, SiteId, VerifiedKey};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let latchkey_url = std::env::var("LATCHKEY_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let listen = std::env::var("CONTENT_API_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&listen).await?;
    println!("content API on http://{}, keys checked by {latchkey_url}", listener.local_addr()?);
    serve(listener, Client::new(&latchkey_url)?).await?;
    Ok(())
}

/// Serves the content API on `listener`, checking keys with the Latchkey behind `latchkey`.
pub async fn serve(listener: TcpListener, latchkey: Client) -> std::io::Result<()> {
    // With the peer address, so Latchkey checks IP allowlists against the real client.
    axum::serve(listener, router(latchkey).into_make_service_with_connect_info::<SocketAddr>()).await
}

/// The routes, each guarded by the level it needs. `route_layer` (unlike `layer`) guards
/// only the routes added before it, and only when a path matches: an unknown path is a
/// plain 404, not a request for a key.
pub fn router(latchkey: Client) -> Router {
    let reading = Router::new()
        .route("/articles", get(list_articles))
        .route("/whoami", get(whoami))
        .route_layer(LatchkeyLayer::new(latchkey.clone()).require(Permission::Read));
    let writing = Router::new()
        .route("/articles", post(create_article))
        .route_layer(LatchkeyLayer::new(latchkey).require(Permission::Write));
    reading.merge(writing).with_state(Articles::default())
}

#[derive(Clone, Default)]
struct Articles(Arc<RwLock<Vec<Article>>>);

#[derive(Clone, Serialize)]
struct Article {
    id: usize,
    /// The site of the key that wrote it: each site sees its own articles.
    site_id: Option<SiteId>,
    title: String,
    body: String,
    author_key_id: KeyId,
    author_owner_id: Option<String>,
}

#[derive(Deserialize)]
struct NewArticle {
    title: String,
    body: String,
}

#[derive(Serialize)]
struct ArticleList {
    data: Vec<Article>,
}

/// The articles of the key's site; a Master key belongs to no site and sees them all.
async fn list_articles(State(articles): State<Articles>, key: VerifiedKey) -> Json<ArticleList> {
    let articles = articles.0.read().expect("no writer panics while holding the lock");
    let visible = articles.iter().filter(|article| key.site_id.is_none() || article.site_id == key.site_id);
    Json(ArticleList { data: visible.cloned().collect() })
}

async fn create_article(
    State(articles): State<Articles>,
    key: VerifiedKey,
    Json(new): Json<NewArticle>,
) -> (StatusCode, Json<Article>) {
    let mut articles = articles.0.write().expect("no writer panics while holding the lock");
    let article = Article {
        id: articles.len() + 1,
        site_id: key.site_id,
        title: new.title,
        body: new.body,
        author_key_id: key.id,
        author_owner_id: key.owner_id,
    };
    articles.push(article.clone());
    (StatusCode::CREATED, Json(article))
}

/// Who the presented key is, as the layer handed it over: to check a key is wired right.
async fn whoami(key: VerifiedKey) -> Json<VerifiedKey> {
    Json(key)
}
