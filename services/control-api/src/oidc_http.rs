//! The HTTP client for fetches of tenant-supplied OIDC URLs (discovery, JWKS, token endpoint),
//! shaped as the `openidconnect` crate's async client (an `Fn(HttpRequest) -> Future`).
//!
//! Every request passes the egress policy (`[egress]` settings): https only unless
//! `allow_http`; no loopback, private, link-local, shared, multicast or unspecified address
//! unless `allow_private_networks` (or the host is in `allow_hosts`); the name is resolved once
//! and the connection pinned to the checked address (no DNS rebinding between check and use);
//! redirects are not followed; bodies are capped. This is the interim guard until the shared
//! `gatehouse-egress` crate lands, which will replace [`OidcHttp::execute`]'s checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use gatehouse_core::config::EgressConfig;

/// Largest response body accepted from an identity provider.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("the URL is not allowed: {0}")]
    Refused(String),
    #[error("the request failed: {0}")]
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct OidcHttp {
    allow_http: bool,
    allow_private_networks: bool,
    allow_hosts: Vec<String>,
    timeout: Duration,
}

impl OidcHttp {
    pub fn new(cfg: &EgressConfig) -> Self {
        Self {
            allow_http: cfg.allow_http,
            allow_private_networks: cfg.allow_private_networks,
            allow_hosts: cfg.allow_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            timeout: Duration::from_millis(cfg.request_timeout_ms.max(1)),
        }
    }

    /// Checks a URL's scheme and host before anything is fetched (e.g. an issuer URL an admin
    /// submits). Returns the address the connection must use.
    pub async fn check(&self, url: &url::Url) -> Result<SocketAddr, EgressError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => {
                return Err(EgressError::Refused(format!(
                    "scheme {other} is not allowed (https is required)"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::Refused(
                "credentials in the URL are not allowed".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| EgressError::Refused("the URL has no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| EgressError::Refused("the URL has no port".into()))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let exempt =
            self.allow_private_networks || self.allow_hosts.iter().any(|h| h == &bare.to_ascii_lowercase());
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|_| EgressError::Failed("the host name could not be resolved".into()))?
                .collect(),
        };
        let first = *addrs
            .first()
            .ok_or_else(|| EgressError::Failed("the host name has no address".into()))?;
        if !exempt && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(EgressError::Refused(format!(
                "{} resolves to a non-public address ({})",
                bare,
                bad.ip()
            )));
        }
        Ok(first)
    }

    /// Performs one request under the policy.
    pub async fn execute(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, EgressError> {
        let url = url::Url::parse(&request.uri().to_string())
            .map_err(|_| EgressError::Refused("invalid URL".into()))?;
        let addr = self.check(&url).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .no_proxy();
        if let Some(host) = url.host_str()
            && host.parse::<IpAddr>().is_err()
            && !host.starts_with('[')
        {
            // Pin the connection to the address that was checked.
            builder = builder.resolve(host, addr);
        }
        let client = builder
            .build()
            .map_err(|e| EgressError::Failed(format!("client setup: {e}")))?;
        let (parts, body) = request.into_parts();
        let mut outgoing = client.request(parts.method, url.as_str()).body(body);
        for (name, value) in &parts.headers {
            outgoing = outgoing.header(name, value);
        }
        let response = outgoing
            .send()
            .await
            .map_err(|e| EgressError::Failed(without_url(e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut stream = response.bytes_stream();
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| EgressError::Failed(without_url(e)))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(EgressError::Failed("the response is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = http::Response::builder().status(status);
        for (name, value) in &headers {
            out = out.header(name, value);
        }
        out.body(body)
            .map_err(|e| EgressError::Failed(format!("response: {e}")))
    }
}

fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        e.to_string()
    }
}

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 may reach private v4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_http: bool, allow_private: bool) -> OidcHttp {
        OidcHttp {
            allow_http,
            allow_private_networks: allow_private,
            allow_hosts: vec![],
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn refuses_private_targets_and_plain_http_by_default() {
        let strict = policy(false, false);
        for url in [
            "http://example.com/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest",
            "https://[::ffff:127.0.0.1]/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://127.1/",
            "https://localhost/",
            "https://user:pw@example.com/",
            "ftp://example.com/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            assert!(strict.check(&parsed).await.is_err(), "{url} must be refused");
        }
        let local = policy(true, true);
        assert!(
            local
                .check(&url::Url::parse("http://127.0.0.1:9/").unwrap())
                .await
                .is_ok()
        );
    }

    #[test]
    fn public_addresses() {
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
        assert!(!is_public("100.64.1.1".parse().unwrap()));
        assert!(!is_public("fd00::1".parse().unwrap()));
    }
}
