//! The client's reading of refusal codes is the server's: every refusal in the core's
//! vocabulary gets the same status (and message) from `latchkey_client::Refusal` as from
//! the server's error table. This is what lets the client depend on no server crate.

use latchkey_core::Refusal as ServerRefusal;
use latchkey_server::error::ApiError;

#[test]
fn every_refusal_has_the_status_the_servers_error_table_gives_it() {
    for refusal in ServerRefusal::EVERY_KIND {
        let client_side = latchkey_client::Refusal::from_code(refusal.code());
        assert_eq!(client_side.status(), ApiError::from(refusal).status(), "{refusal:?}");
    }
}

#[test]
fn every_refusal_has_the_message_the_server_gives_it() {
    // Throttling shares `rate_limited` with a key's own rate limit, but reaches the client
    // as an error carrying the server's own message, never through this table.
    let keyed = ServerRefusal::EVERY_KIND.into_iter().filter(|r| !matches!(r, ServerRefusal::Throttled { .. }));
    for refusal in keyed {
        assert_eq!(latchkey_client::Refusal::from_code(refusal.code()).message(), refusal.message(), "{refusal:?}");
    }
}
