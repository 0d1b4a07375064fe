//! The SSRF guard for the dataplane's outbound calls to tenant-supplied URLs (upstream MCP
//! servers, OAuth token endpoints): https unless allowed, and no private, loopback, link-local or
//! otherwise internal address unless the operator allows it. The check runs on the URL (literal
//! IPs) and again on every DNS answer, in the resolver the HTTP client connects with, so a name
//! cannot resolve to an internal address between check and connect. Redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use gatehouse_core::Config;

#[derive(Clone, Debug)]
pub struct EgressPolicy {
    allow_http: bool,
    allow_private: bool,
    allow_hosts: Arc<Vec<String>>,
}

impl EgressPolicy {
    /// From `egress.*`; local mode (`gatehouse up`) also allows plain-http loopback upstreams.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            allow_http: cfg.egress.allow_http || cfg.is_local(),
            allow_private: cfg.egress.allow_private_networks || cfg.is_local(),
            allow_hosts: Arc::new(
                cfg.egress
                    .allow_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    fn host_exempt(&self, host: &str) -> bool {
        self.allow_hosts.iter().any(|h| h == &host.to_ascii_lowercase())
    }

    /// Refuses a URL before any connection is attempted. The message is generic on purpose.
    pub fn check_url(&self, url: &Url) -> Result<(), &'static str> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err("upstream URL scheme is not allowed"),
        }
        let host = url.host().ok_or("upstream URL has no host")?;
        let exempt = url.host_str().is_some_and(|h| self.host_exempt(h));
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && !self.allow_private
            && !exempt
            && is_internal(ip)
        {
            return Err("upstream address is not allowed");
        }
        Ok(())
    }

    /// A resolver for the HTTP client that drops internal addresses from DNS answers.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { policy: self.clone() })
    }
}

/// Whether `ip` is an address no tenant URL may reach: loopback, private, link-local, CGNAT,
/// unspecified, multicast, documentation and IPv4-mapped forms of those.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(mapped) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(mapped));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || (s[0] == 0x2001 && s[1] == 0xdb8)
        }
    }
}

pub struct GuardedResolver {
    policy: EgressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let exempt = policy.allow_private || policy.host_exempt(&host);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| exempt || !is_internal(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("upstream address is not allowed".into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
            "0.0.0.0", "::1", "fc00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls() {
        let strict = EgressPolicy {
            allow_http: false,
            allow_private: false,
            allow_hosts: Arc::new(vec![]),
        };
        assert!(strict.check_url(&Url::parse("http://example.com/mcp").unwrap()).is_err());
        assert!(strict.check_url(&Url::parse("https://example.com/mcp").unwrap()).is_ok());
        for bad in [
            "https://127.0.0.1/", "https://2130706433/", "https://0x7f000001/", "https://127.1/",
            "https://[::ffff:127.0.0.1]/", "https://169.254.169.254/latest", "file:///etc/passwd",
        ] {
            assert!(strict.check_url(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }
}
