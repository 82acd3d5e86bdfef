//! The SSRF guard: webhook URLs must lead to public addresses. A URL whose host resolves to a
//! private, loopback, link-local or otherwise non-public address is refused when it is set, and
//! again at each delivery (DNS answers can change), unless the operator allow-lists the address
//! (`delivery.allow_private`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which addresses deliveries may go to.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Networks exempt from the guard.
    pub allow: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Why an address is refused, or `None` when it is permitted.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        (!self.permits(ip)).then(|| {
            format!("{ip} is not a public address (allow it with delivery.allow_private if this is intended)")
        })
    }

    /// Resolves a URL's host and checks every address it resolves to.
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let host = url.host().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match host {
            url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            url::Host::Domain(name) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("{name} does not resolve: {e}"))?
                .map(|a| a.ip())
                .collect(),
        };
        if addresses.is_empty() {
            return Err("the host resolves to no address".into());
        }
        match addresses.into_iter().find_map(|ip| self.refusal(ip)) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

/// A DNS resolver for the delivery client that drops refused addresses, so a name that resolves
/// to a private address at delivery time cannot be reached however it resolved before.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = all.iter().copied().filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                let shown = all.first().map(|a| a.ip().to_string()).unwrap_or_default();
                return Err(format!(
                    "refused by the SSRF guard: {host} resolves to {shown}, not a public address"
                )
                .into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Whether an address is reachable on the public internet (and so fine to deliver to).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u8) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const NOT_PUBLIC: [([u8; 4], u8); 16] = [
        ([0, 0, 0, 0], 8),       // "this network"
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata lives here)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and broadcast
        ([255, 255, 255, 255], 32),
    ];
    !NOT_PUBLIC.iter().any(|(net, bits)| in_v4(ip, *net, *bits))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96
        return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address is in the next 32 bits
        return is_public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    let not_public = ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0, 0, 0, 0, 0, 0]           // IPv4-compatible ::a.b.c.d (deprecated)
        || s[0..6] == [0, 0, 0, 0, 0xffff, 0]      // IPv4-translated ::ffff:0:a.b.c.d (SIIT, never public)
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])  // discard 100::/64
        || (s[0] & 0xfe00) == 0xfc00                // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80                // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0                // site-local fec0::/10 (deprecated)
        || (s[0] & 0xff00) == 0xff00                // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)       // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200); // IETF protocol assignments 2001::/23 (Teredo, ORCHID…)
    !not_public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn ipv4_private_loopback_link_local_and_reserved_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "198.18.0.1",
        ] {
            assert!(!public(ip), "{ip} should not be public");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "93.184.216.34"] {
            assert!(public(ip), "{ip} should be public");
        }
    }

    #[test]
    fn ipv6_loopback_link_local_unique_local_and_multicast_are_not_public() {
        for ip in
            ["::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1", "fec0::1", "100::1"]
        {
            assert!(!public(ip), "{ip} should not be public");
        }
        for ip in ["2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "2001:4860:4860::8888"] {
            assert!(public(ip), "{ip} should be public");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_ipv4_are_judged_by_it() {
        assert!(!public("::ffff:127.0.0.1"), "IPv4-mapped loopback");
        assert!(!public("::ffff:10.0.0.1"), "IPv4-mapped private");
        assert!(!public("::ffff:169.254.169.254"), "IPv4-mapped metadata address");
        assert!(public("::ffff:8.8.8.8"));
        assert!(!public("64:ff9b::a00:1"), "NAT64 of 10.0.0.1");
        assert!(public("64:ff9b::808:808"), "NAT64 of 8.8.8.8");
        assert!(!public("2002:c0a8:0101::1"), "6to4 of 192.168.1.1");
        assert!(!public("::127.0.0.1"), "IPv4-compatible");
        for translated in ["::ffff:0:7f00:1", "::ffff:0:808:808", "::ffff:0:0"] {
            assert!(!public(translated), "{translated}: IPv4-translated (::ffff:0:0/96)");
        }
    }

    #[test]
    fn the_allow_list_exempts_its_networks_only() {
        let policy =
            AddressPolicy { allow: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()] };
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(policy.permits("fd00::5".parse().unwrap()));
        assert!(!policy.permits("10.0.0.1".parse().unwrap()));
        assert!(policy.refusal("10.0.0.1".parse().unwrap()).unwrap().contains("allow_private"));
    }

    #[tokio::test]
    async fn urls_are_checked_by_every_address_their_host_resolves_to() {
        let policy = AddressPolicy::default();
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(policy.check_url(&url("http://127.0.0.1:9/x")).await.is_err());
        assert!(policy.check_url(&url("http://[::1]:9/x")).await.is_err());
        assert!(policy.check_url(&url("http://localhost:9/x")).await.is_err(), "names are resolved first");
        assert!(policy.check_url(&url("http://8.8.8.8/x")).await.is_ok());
        let open = AddressPolicy { allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()] };
        assert!(open.check_url(&url("http://localhost:9/x")).await.is_ok());
    }
}
