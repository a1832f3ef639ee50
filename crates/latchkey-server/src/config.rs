//! The server's configuration, as a value passed in (no global state). The binary builds
//! it from flags and environment variables; tests build it directly.

pub use crate::connections::ConnectionLimits;
use axum::http::HeaderMap;
use latchkey_core::IpNetwork;
use latchkey_service::ServiceConfig;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// What the operations and the verification cache need: key format, cache size and
    /// staleness, failure throttling.
    pub service: ServiceConfig,
    pub trusted_proxies: TrustedProxies,
    /// How often last-used times and usage counts are written to the store.
    pub last_used_flush_interval: Duration,
    /// Whether `GET /metrics` is served with the API (else only where [`crate::serve_metrics`]
    /// serves it, e.g. on an address that only the monitoring network reaches).
    pub metrics_on_api_listener: bool,
    /// A dashboard session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// How many connections at once, and how long a client may take to send headers.
    pub connections: ConnectionLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            service: ServiceConfig::default(),
            trusted_proxies: TrustedProxies::default(),
            last_used_flush_interval: Duration::from_secs(1),
            metrics_on_api_listener: true,
            session_idle_timeout: Duration::from_secs(12 * 3600),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Networks whose `X-Forwarded-For` is believed (`--trust-proxy 10.0.0.0/8,::1`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNetwork>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<IpNetwork>().map_err(|e| format!("--trust-proxy: {}", e.message)))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client's address. `X-Forwarded-For` is only read when the socket peer is a
    /// trusted proxy, and then from the right: the first address that is not itself a
    /// trusted proxy is the client (anything left of it could be forged by the client).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|part| part.trim().parse().ok())
            .collect();
        forwarded.iter().rev().find(|ip| !self.trusts(**ip)).or(forwarded.first()).copied().unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: TrustedProxies = "127.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        assert_eq!(proxies.client_ip("127.0.0.1".parse().unwrap(), &headers), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(proxies.client_ip("192.0.2.1".parse().unwrap(), &headers), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
