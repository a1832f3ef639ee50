//! The client against a real Latchkey: the server in-process on port 0 with a fresh SQLite
//! file per test, called over HTTP. One test binary (modules below) so everything links once.

mod errors;
mod guarded;
mod management;
mod servers;
mod verification;
mod vocabulary;

// The example service itself, so the middleware tests run its actual code. Its `main` is
// the one part the tests do not call.
#[path = "../../examples/content_api.rs"]
#[allow(dead_code)]
mod content_api;
