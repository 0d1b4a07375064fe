//! The client's address behind reverse proxies: `X-Forwarded-For` is believed only when it comes
//! from a peer the operator declared a proxy (`control_api.trusted_proxies`,
//! `dataplane.trusted_proxies`), and only as far back as the chain of such proxies goes.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks whose connections may name the client in `X-Forwarded-For`.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.7`) and networks (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an IP address or network (CIDR)"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a connection from `peer` carrying these `X-Forwarded-For` values (in header
    /// order). Walking from the nearest hop back, every address a trusted proxy appended is
    /// believed until the first one that is not a trusted proxy itself: that one is the client.
    /// Anything before it was written by the client and may be forged. With no trusted proxies,
    /// or a peer that is not one, the peer is the client.
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops: Vec<&[u8]> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(|b| *b == b','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = std::str::from_utf8(hop).ok().and_then(parse_hop) else {
                // Unreadable: nothing before it can be attributed to a trusted proxy.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` element: an address, possibly bracketed (IPv6) or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn client(t: &TrustedProxies, peer: &str, xff: &[&str]) -> Option<IpAddr> {
        t.client_ip(ip(peer), xff.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn the_header_is_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(client(&none, "10.0.0.1", &["203.0.113.7"]), ip("10.0.0.1"));
        let lb = proxies(&["10.0.0.0/8", "192.0.2.9"]);
        assert_eq!(
            client(&lb, "198.51.100.4", &["203.0.113.7"]),
            ip("198.51.100.4"),
            "not a proxy"
        );
        assert_eq!(client(&lb, "10.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(client(&lb, "10.0.0.1", &[]), ip("10.0.0.1"), "no header");
        assert_eq!(
            client(&lb, "192.0.2.9", &["203.0.113.7:4711"]),
            ip("203.0.113.7"),
            "with a port"
        );
    }

    #[test]
    fn forged_addresses_before_the_client_are_ignored() {
        let lb = proxies(&["10.0.0.0/8"]);
        // The client wrote "1.2.3.4" itself; the proxy appended the address it saw.
        assert_eq!(
            client(&lb, "10.0.0.1", &["1.2.3.4, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Two proxies, one header each: the nearest untrusted hop wins.
        assert_eq!(
            client(&lb, "10.0.0.1", &["1.2.3.4, 203.0.113.7", "10.0.0.2"]),
            ip("203.0.113.7")
        );
        // Every hop a proxy: the farthest one is all we know.
        assert_eq!(client(&lb, "10.0.0.1", &["10.0.0.3, 10.0.0.2"]), ip("10.0.0.3"));
        // An unreadable hop stops the walk at the last address a proxy vouched for.
        assert_eq!(client(&lb, "10.0.0.1", &["203.0.113.7, unknown"]), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let lb = proxies(&["fd00::/8", "10.0.0.0/8"]);
        assert_eq!(client(&lb, "fd00::1", &["[2001:db8::7]:443"]), ip("2001:db8::7"));
        assert_eq!(
            client(&lb, "::ffff:10.0.0.1", &["2001:db8::7"]),
            ip("2001:db8::7"),
            "v4-mapped peer"
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.internal".into()]).is_err());
        assert!(TrustedProxies::parse(&[" 10.0.0.0/8 ".into(), "::1".into()]).is_ok());
    }
}
