//! Integration tests: the real server on a real port, a fresh database per test, a real
//! HTTP client. One test binary (modules below) so everything links once.

mod authorization;
mod bad_inputs;
mod browser;
mod brute_force;
mod caddy;
mod crash;
mod dashboard_audit;
mod dashboard_authorization;
mod dashboard_forms;
mod dashboard_key_page;
mod dashboard_keys_list;
mod dashboard_navigation;
mod dashboard_new_key;
mod dashboard_rotation;
mod dashboard_screenshots;
mod dashboard_sites;
mod dashboard_webhooks;
mod deployment;
mod errors;
mod helpers;
mod import;
mod key_lifecycle;
mod keys;
mod lifecycle;
mod nginx;
#[path = "../support/nginx_process.rs"]
mod nginx_process;
mod observability;
mod openapi;
mod revocation;
mod secret_scanning;
mod secrets;
mod sites;
mod verification;
mod webhook_routes;
mod webhooks;
