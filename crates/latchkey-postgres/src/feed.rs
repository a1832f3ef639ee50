//! The invalidation feed: one `LISTEN` connection per watcher, turning PostgreSQL
//! notifications from other instances into [`Invalidation`] messages.
//!
//! `PgListener::recv()` reconnects silently, and notifications sent while it was away are
//! simply gone; a cache that trusted it would serve revoked keys. So the feed uses
//! `try_recv()` with eager reconnection off, reports every gap as `Lost` the moment it
//! is seen, and `Resumed` only once `LISTEN` runs again on a new connection. A quiet
//! connection is probed now and then, because a peer that vanished without closing the
//! socket would otherwise look like a quiet channel forever.

use crate::schema::ACQUIRE_TIMEOUT;
use crate::PostgresStore;
use latchkey_core::KeyHash;
use latchkey_store::{Invalidation, StoreError, StoreResult};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Enough to absorb a burst (a site deletion with many keys) while the cache catches up.
const FEED_CAPACITY: usize = 1024;

/// After this long without a notification, check that the connection is still alive.
const PROBE_AFTER: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds one reconnection attempt, so a black-holed server cannot stall the retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// [`Store::watch_invalidations`](latchkey_store::Store::watch_invalidations): returns
/// once `LISTEN` is in place, so every change committed afterwards by another instance
/// is delivered, or a `Lost` precedes the gap.
pub(crate) async fn watch(store: &PostgresStore) -> StoreResult<mpsc::Receiver<Invalidation>> {
    let shutdown = store.shutdown.subscribe();
    if *shutdown.borrow() || store.pool.is_closed() {
        return Err(StoreError::Unavailable("the store is closed".into()));
    }
    // A pool of one only so that `PgListener` can reconnect; a connection that leaves
    // the listener is closed, never reused with stale LISTEN state.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_release(|_conn, _meta| Box::pin(async { Ok(false) }))
        .connect_lazy_with(store.listener_options.clone());
    let listener = match listen(&pool, &store.channel).await {
        Ok(listener) => listener,
        Err(error) => {
            pool.close().await;
            return Err(StoreError::unavailable(error));
        }
    };
    let (sender, receiver) = mpsc::channel(FEED_CAPACITY);
    let task = tokio::spawn(run(pool, listener, store.channel.clone(), sender, shutdown));
    let mut feeds = store.feeds.lock().unwrap_or_else(|p| p.into_inner());
    feeds.retain(|feed| !feed.is_finished());
    feeds.push(task);
    Ok(receiver)
}

/// Connects and subscribes. `pool` holds the listener's own connect options (its
/// `application_name` identifies it in `pg_stat_activity`).
async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Eager reconnection would hide the gap inside `try_recv`; reconnecting is ours.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// Runs until the receiver is dropped or the store shuts down, then closes the
/// listener's pool.
async fn run(
    pool: PgPool,
    listener: PgListener,
    channel: String,
    sender: mpsc::Sender<Invalidation>,
    shutdown: watch::Receiver<bool>,
) {
    relay(&pool, listener, &channel, &sender, shutdown).await;
    pool.close().await;
}

/// The consumer is gone or the store is closing: the relay ends without a word.
struct Stop;

async fn relay(
    pool: &PgPool,
    mut listener: PgListener,
    channel: &str,
    sender: &mpsc::Sender<Invalidation>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let reason = match forward(&mut listener, sender, &mut shutdown).await {
            Ok(reason) => reason,
            Err(Stop) => return,
        };
        drop(listener);
        tracing::warn!(%channel, %reason, "invalidation feed lost; caches bypassed until it resumes");
        if deliver(sender, &mut shutdown, Invalidation::Lost).await.is_err() {
            return;
        }
        listener = match reconnect(pool, channel, sender, &mut shutdown).await {
            Ok(listener) => listener,
            Err(Stop) => return,
        };
        tracing::info!(%channel, "invalidation feed resumed");
        if deliver(sender, &mut shutdown, Invalidation::Resumed).await.is_err() {
            return;
        }
    }
}

/// Waits for room in the channel, but not past shutdown: a consumer that stopped reading
/// must not keep `close()` waiting.
async fn deliver(
    sender: &mpsc::Sender<Invalidation>,
    shutdown: &mut watch::Receiver<bool>,
    message: Invalidation,
) -> Result<(), Stop> {
    tokio::select! {
        _ = shutdown.wait_for(|closed| *closed) => Err(Stop),
        sent = sender.send(message) => sent.map_err(|_| Stop),
    }
}

/// Forwards notifications until the connection is lost; returns why it was lost.
async fn forward(
    listener: &mut PgListener,
    sender: &mpsc::Sender<Invalidation>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<String, Stop> {
    loop {
        let next = tokio::select! {
            _ = shutdown.wait_for(|closed| *closed) => return Err(Stop),
            _ = sender.closed() => return Err(Stop),
            // `try_recv` only consumes whole messages, so dropping it on timeout loses nothing.
            next = tokio::time::timeout(PROBE_AFTER, listener.try_recv()) => next,
        };
        match next {
            Ok(Ok(Some(notification))) => {
                let Some(hash) = parse_hash(notification.payload()) else {
                    let channel = notification.channel();
                    tracing::warn!(%channel, "ignoring a notification that is not a key hash");
                    continue;
                };
                // A hash, never a key; its first bytes are enough to follow one change.
                tracing::trace!(hash = %&notification.payload()[..12], "invalidation received");
                deliver(sender, shutdown, Invalidation::Key(hash)).await?;
            }
            Ok(Ok(None)) => return Ok("connection closed".to_owned()),
            Ok(Err(error)) => return Ok(error.to_string()),
            Err(_quiet) => {
                let probe = sqlx::query("SELECT 1").execute(&mut *listener);
                match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Ok(error.to_string()),
                    Err(_) => return Ok("connection unresponsive".to_owned()),
                }
            }
        }
    }
}

/// Retries with a doubling backoff until `LISTEN` succeeds on a fresh connection.
async fn reconnect(
    pool: &PgPool,
    channel: &str,
    sender: &mpsc::Sender<Invalidation>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<PgListener, Stop> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, listen(pool, channel));
        let failure = tokio::select! {
            _ = shutdown.wait_for(|closed| *closed) => return Err(Stop),
            _ = sender.closed() => return Err(Stop),
            attempt = attempt => match attempt {
                Ok(Ok(listener)) => return Ok(listener),
                Ok(Err(error)) => error.to_string(),
                Err(_) => "timed out".to_owned(),
            },
        };
        tracing::debug!(%channel, %failure, ?backoff, "invalidation feed still down");
        tokio::select! {
            _ = shutdown.wait_for(|closed| *closed) => return Err(Stop),
            _ = sender.closed() => return Err(Stop),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The notification payload: the key's SHA-256 as lowercase hex.
pub(crate) fn hash_hex(hash: &KeyHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in hash.0 {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

pub(crate) fn parse_hash(hex: &str) -> Option<KeyHash> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).ok()?;
    }
    Some(KeyHash(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_survives_the_payload_round_trip() {
        let hash = KeyHash(std::array::from_fn(|i| (i * 37 + 11) as u8));
        let hex = hash_hex(&hash);
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_hash(&hex), Some(hash));
        assert_eq!(parse_hash(&hex.to_uppercase()), Some(hash));
        assert_eq!(parse_hash(&hex[..62]), None);
        assert_eq!(parse_hash(&format!("{}zz", &hex[..62])), None);
    }
}
