//! What kind of destination an IP address is, for the SSRF guard.
//!
//! Every address falls in exactly one [`AddressClass`]. IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, IPv4-compatible, IPv4-translated, 6to4, NAT64 well-known prefix) are classified by
//! the IPv4 address they reach, so `[::ffff:127.0.0.1]` or `[2002:7f00:1::]` is loopback, not an
//! innocent IPv6 address. Anything outside the ranges IANA marks globally reachable is not
//! [`AddressClass::Public`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of destination an address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// Globally reachable unicast: always allowed.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), unique-local fc00::/7, deprecated site-local
    /// fec0::/10, benchmarking 198.18/15 and 2001:2::/48, NAT64 local-use 64:ff9b:1::/48.
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT shared space 100.64.0.0/10.
    SharedAddressSpace,
    /// Cloud instance-metadata services (169.254.169.254, fd00:ec2::254, 100.100.100.200,
    /// 168.63.129.16, ...): never reachable unless the host is explicitly allowed by name.
    Metadata,
    /// 0.0.0.0/8, :: — on Linux, connecting to 0.0.0.0 reaches the local host.
    Unspecified,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// Everything else that is not globally reachable unicast: 240/4, 192.0.0/24, 192.88.99/24,
    /// IETF protocol assignments 2001::/23 (incl. Teredo), discard-only 100::/64, SRv6 5f00::/16,
    /// and IPv6 outside 2000::/3.
    Reserved,
}

impl AddressClass {
    /// Classes that `egress.allow_private_networks` opens. Metadata, unspecified, multicast,
    /// broadcast, documentation and reserved addresses stay closed whatever the setting.
    pub fn is_private_network(self) -> bool {
        matches!(
            self,
            AddressClass::Loopback
                | AddressClass::Private
                | AddressClass::LinkLocal
                | AddressClass::SharedAddressSpace
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link_local",
            AddressClass::SharedAddressSpace => "shared_address_space",
            AddressClass::Metadata => "metadata",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Instance-metadata endpoints of the major clouds (IPv4).
const METADATA_V4: &[Ipv4Addr] = &[
    // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle (IMDS)
    Ipv4Addr::new(169, 254, 169, 254),
    // AWS Route 53 resolver / NTP on the link-local range
    Ipv4Addr::new(169, 254, 169, 253),
    Ipv4Addr::new(169, 254, 169, 123),
    // AWS ECS task metadata
    Ipv4Addr::new(169, 254, 170, 2),
    // Alibaba Cloud
    Ipv4Addr::new(100, 100, 100, 200),
    // Azure WireServer (a public address used as a host-local service)
    Ipv4Addr::new(168, 63, 129, 16),
    // Oracle Cloud legacy metadata
    Ipv4Addr::new(192, 0, 0, 192),
];

/// Instance-metadata endpoints (IPv6): AWS IMDS and its DNS/NTP.
const METADATA_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23),
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x123),
];

/// Classifies `ip`.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

pub fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    if METADATA_V4.contains(&ip) {
        return AddressClass::Metadata;
    }
    let o = ip.octets();
    if o[0] == 0 {
        return AddressClass::Unspecified;
    }
    if o[0] == 127 {
        return AddressClass::Loopback;
    }
    if ip == Ipv4Addr::BROADCAST {
        return AddressClass::Broadcast;
    }
    if in_v4(ip, [10, 0, 0, 0], 8) || in_v4(ip, [172, 16, 0, 0], 12) || in_v4(ip, [192, 168, 0, 0], 16) {
        return AddressClass::Private;
    }
    if in_v4(ip, [198, 18, 0, 0], 15) {
        return AddressClass::Private;
    }
    if in_v4(ip, [100, 64, 0, 0], 10) {
        return AddressClass::SharedAddressSpace;
    }
    if in_v4(ip, [169, 254, 0, 0], 16) {
        return AddressClass::LinkLocal;
    }
    if in_v4(ip, [192, 0, 2, 0], 24) || in_v4(ip, [198, 51, 100, 0], 24) || in_v4(ip, [203, 0, 113, 0], 24) {
        return AddressClass::Documentation;
    }
    if in_v4(ip, [224, 0, 0, 0], 4) {
        return AddressClass::Multicast;
    }
    if in_v4(ip, [240, 0, 0, 0], 4) || in_v4(ip, [192, 0, 0, 0], 24) || in_v4(ip, [192, 88, 99, 0], 24) {
        return AddressClass::Reserved;
    }
    AddressClass::Public
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

fn v4_at(bits: u128, shift: u32) -> Ipv4Addr {
    Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32)
}

pub fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if METADATA_V6.contains(&ip) {
        return AddressClass::Metadata;
    }
    let bits = u128::from(ip);
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // ::ffff:a.b.c.d (IPv4-mapped): the kernel connects to the IPv4 address.
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96) {
        return classify_v4(v4_at(bits, 0));
    }
    // ::ffff:0:a.b.c.d (IPv4-translated, SIIT).
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96) {
        return classify_v4(v4_at(bits, 0));
    }
    // ::a.b.c.d (IPv4-compatible, deprecated): classify by the IPv4 address it names.
    if in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) {
        return classify_v4(v4_at(bits, 0));
    }
    // 64:ff9b::/96 NAT64 well-known prefix: a NAT64 gateway forwards to the embedded IPv4.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return classify_v4(v4_at(bits, 0));
    }
    // 64:ff9b:1::/48 NAT64 local-use prefix: embeds addresses of the operator's own networks.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48) {
        return AddressClass::Private;
    }
    // 2002::/16 6to4: the relay forwards to the IPv4 address in bits 16..48.
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return classify_v4(v4_at(bits, 80));
    }
    if in_v6(ip, Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8) {
        return AddressClass::Multicast;
    }
    if in_v6(ip, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10) {
        return AddressClass::LinkLocal;
    }
    if in_v6(ip, Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10)
        || in_v6(ip, Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7)
    {
        return AddressClass::Private;
    }
    if in_v6(ip, Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0), 32)
        || in_v6(ip, Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20)
    {
        return AddressClass::Documentation;
    }
    // 2001:2::/48 benchmarking sits inside 2001::/23; lab networks, like 198.18/15.
    if in_v6(ip, Ipv6Addr::new(0x2001, 0x0002, 0, 0, 0, 0, 0, 0), 48) {
        return AddressClass::Private;
    }
    // 2001::/23 IETF protocol assignments (Teredo 2001::/32, ORCHID, AMT...): tunnels and
    // special purposes, not plain destinations.
    if in_v6(ip, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23) {
        return AddressClass::Reserved;
    }
    // 5f00::/16 SRv6 segment identifiers.
    if in_v6(ip, Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16) {
        return AddressClass::Reserved;
    }
    // Global unicast is 2000::/3; everything else (100::/64 discard-only included) is reserved.
    if in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return AddressClass::Public;
    }
    AddressClass::Reserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    fn v(s: &str) -> AddressClass {
        classify(s.parse().unwrap_or_else(|_| panic!("{s} is an IP address")))
    }

    #[test]
    fn ipv4_ranges() {
        let table: &[(&str, AddressClass)] = &[
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("0.255.255.255", Unspecified),
            ("1.0.0.0", Public),
            ("1.1.1.1", Public),
            ("8.8.8.8", Public),
            ("9.255.255.255", Public),
            ("10.0.0.0", Private),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("11.0.0.0", Public),
            ("100.63.255.255", Public),
            ("100.64.0.0", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("100.128.0.0", Public),
            ("100.100.100.200", Metadata),
            ("126.255.255.255", Public),
            ("127.0.0.0", Loopback),
            ("127.0.0.1", Loopback),
            ("127.1.2.3", Loopback),
            ("127.255.255.255", Loopback),
            ("128.0.0.0", Public),
            ("168.63.129.16", Metadata),
            ("168.63.129.17", Public),
            ("169.253.255.255", Public),
            ("169.254.0.0", LinkLocal),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", Metadata),
            ("169.254.169.253", Metadata),
            ("169.254.169.123", Metadata),
            ("169.254.170.2", Metadata),
            ("169.254.255.255", LinkLocal),
            ("169.255.0.0", Public),
            ("172.15.255.255", Public),
            ("172.16.0.0", Private),
            ("172.20.1.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.0", Public),
            ("192.0.0.0", Reserved),
            ("192.0.0.8", Reserved),
            ("192.0.0.192", Metadata),
            ("192.0.0.255", Reserved),
            ("192.0.1.255", Public),
            ("192.0.2.0", Documentation),
            ("192.0.2.255", Documentation),
            ("192.0.3.0", Public),
            ("192.88.98.255", Public),
            ("192.88.99.1", Reserved),
            ("192.88.100.0", Public),
            ("192.167.255.255", Public),
            ("192.168.0.0", Private),
            ("192.168.1.1", Private),
            ("192.168.255.255", Private),
            ("192.169.0.0", Public),
            ("198.17.255.255", Public),
            ("198.18.0.0", Private),
            ("198.19.255.255", Private),
            ("198.20.0.0", Public),
            ("198.51.99.255", Public),
            ("198.51.100.0", Documentation),
            ("198.51.100.255", Documentation),
            ("198.51.101.0", Public),
            ("203.0.112.255", Public),
            ("203.0.113.0", Documentation),
            ("203.0.113.255", Documentation),
            ("203.0.114.0", Public),
            ("223.255.255.255", Public),
            ("224.0.0.0", Multicast),
            ("224.0.0.251", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.0", Reserved),
            ("250.1.2.3", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
        ];
        for (addr, expected) in table {
            assert_eq!(v(addr), *expected, "{addr}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        let table: &[(&str, AddressClass)] = &[
            ("::", Unspecified),
            ("::1", Loopback),
            ("::2", Unspecified), // IPv4-compatible 0.0.0.2
            ("2001:4860:4860::8888", Public),
            ("2606:4700:4700::1111", Public),
            ("2000::", Public),
            ("3ffe:ffff::1", Public),
            ("3fff::1", Documentation),
            ("3fff:0fff:ffff::", Documentation),
            ("3fff:1000::", Public),
            ("2001:db8::1", Documentation),
            ("2001:db8:ffff::", Documentation),
            ("2001:db9::1", Public),
            ("2001::1", Reserved),             // Teredo
            ("2001:0:4136:e378::1", Reserved), // Teredo
            ("2001:2::1", Private),            // benchmarking
            ("2001:10::1", Reserved),          // ORCHID
            ("2001:20::1", Reserved),          // ORCHIDv2
            ("2001:1ff::1", Reserved),
            ("2001:200::1", Public),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fdff:ffff::1", Private),
            ("fd00:ec2::254", Metadata),
            ("fd00:ec2::23", Metadata),
            ("fd00:ec2::1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("feff::1", Private),
            ("ff02::1", Multicast),
            ("ff0e::1", Multicast),
            ("100::1", Reserved), // discard-only
            ("5f00::1", Reserved),
            ("4000::1", Reserved),
            ("1000::1", Reserved),
            ("e000::1", Reserved),
        ];
        for (addr, expected) in table {
            assert_eq!(v(addr), *expected, "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_ipv4_are_classified_by_their_ipv4() {
        let table: &[(&str, AddressClass)] = &[
            // IPv4-mapped
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:8.8.8.8", Public),
            ("::ffff:192.0.2.1", Documentation),
            ("::ffff:100.64.0.1", SharedAddressSpace),
            // IPv4-translated (SIIT)
            ("::ffff:0:127.0.0.1", Loopback),
            ("::ffff:0:169.254.169.254", Metadata),
            ("::ffff:0:8.8.8.8", Public),
            // IPv4-compatible (deprecated)
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("::169.254.169.254", Metadata),
            ("::8.8.8.8", Public),
            // NAT64 well-known prefix
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::a9fe:a9fe", Metadata),
            ("64:ff9b::192.168.1.1", Private),
            ("64:ff9b::8.8.8.8", Public),
            // NAT64 local-use prefix
            ("64:ff9b:1::1", Private),
            ("64:ff9b:1:ffff::8.8.8.8", Private),
            // 6to4
            ("2002:7f00:1::", Loopback),
            ("2002:7f00:0001::1", Loopback),
            ("2002:a9fe:a9fe::", Metadata),
            ("2002:0a00:0001::", Private),
            ("2002:c0a8:0101::1", Private),
            ("2002:0000:0000::", Unspecified),
            ("2002:e000:0001::", Multicast),
            ("2002:0808:0808::1", Public),
        ];
        for (addr, expected) in table {
            assert_eq!(v(addr), *expected, "{addr}");
        }
    }

    #[test]
    fn every_ipv4_loopback_and_private_form_is_caught_on_a_sweep() {
        // A sweep over a /8 grid: nothing in the blocked /8s ever comes out public.
        for first in [0u8, 10, 127] {
            for second in (0..=255u8).step_by(17) {
                for last in [0u8, 1, 254, 255] {
                    let ip = Ipv4Addr::new(first, second, 3, last);
                    assert_ne!(classify_v4(ip), Public, "{ip}");
                    let mapped = ip.to_ipv6_mapped();
                    assert_ne!(classify_v6(mapped), Public, "{mapped}");
                    let nat64 = Ipv6Addr::from(
                        u128::from(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)) | u128::from(u32::from(ip)),
                    );
                    assert_ne!(classify_v6(nat64), Public, "{nat64}");
                    let six_to_four = Ipv6Addr::from((0x2002u128 << 112) | (u128::from(u32::from(ip)) << 80));
                    assert_ne!(classify_v6(six_to_four), Public, "{six_to_four}");
                }
            }
        }
    }

    #[test]
    fn private_network_classes() {
        for class in [Loopback, Private, LinkLocal, SharedAddressSpace] {
            assert!(class.is_private_network(), "{class:?}");
        }
        for class in [
            Public,
            Metadata,
            Unspecified,
            Multicast,
            Broadcast,
            Documentation,
            Reserved,
        ] {
            assert!(!class.is_private_network(), "{class:?}");
        }
    }
}
