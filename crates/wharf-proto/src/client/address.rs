//! Where a passive data connection goes when the reply names another address than the
//! server's, and what kind of address that is.

use std::net::IpAddr;

/// Where a passive data connection goes when the reply named `announced` and the control
/// connection goes to `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveTarget {
    /// The announced address is the server's own.
    Announced,
    /// Try the announced address (briefly), then the server's own with the announced port.
    AnnouncedThenServer,
    /// The server's own address with the announced port; the announced one is never connected
    /// to (a server must not steer the client to another host: a NAT misconfiguration, or a
    /// hostile server aiming it at a local service, curl's CVE-2020-8284).
    Server(Unused),
}

/// Why an announced passive address is not connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unused {
    /// Addresses other than the server's are not trusted (the default).
    Untrusted { class: &'static str },
    /// Trusted, but not worth a try (see [`plausible_data_address`]).
    Implausible { class: &'static str },
}

impl PassiveTarget {
    /// `trust`: addresses that differ from the server's may be connected to.
    pub fn choose(announced: IpAddr, peer: IpAddr, trust: bool) -> PassiveTarget {
        if announced == peer {
            return PassiveTarget::Announced;
        }
        let class = address_class(announced, peer);
        if !trust {
            PassiveTarget::Server(Unused::Untrusted { class })
        } else if plausible_data_address(announced, peer) {
            PassiveTarget::AnnouncedThenServer
        } else {
            PassiveTarget::Server(Unused::Implausible { class })
        }
    }
}

/// What kind of address a PASV reply announced, next to the server's: for the log and the
/// troubleshooter.
pub fn address_class(announced: IpAddr, peer: IpAddr) -> &'static str {
    match announced {
        a if a.is_unspecified() => "an unspecified address",
        a if a.is_ipv4() != peer.is_ipv4() => "an address of the other IP family",
        a if a.is_loopback() => "a loopback address",
        IpAddr::V4(v4) if v4.is_link_local() => "a link-local address",
        IpAddr::V6(v6) if is_link_local_v6(v6) => "a link-local address",
        a if is_local_address(a) => "a private address",
        _ => "a public address",
    }
}

/// Whether a PASV address that differs from the server's is worth trying: not when it is
/// unspecified, or loopback / private / link-local while the server is not (the address of a
/// server behind NAT, as seen from inside).
pub fn plausible_data_address(announced: IpAddr, peer: IpAddr) -> bool {
    !announced.is_unspecified() && (!is_local_address(announced) || is_local_address(peer))
}

/// Loopback, private (RFC 1918, IPv6 unique local) or link-local: an address that means
/// something only inside one network.
pub fn is_local_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || is_link_local_v6(v6)
        }
    }
}

fn is_link_local_v6(v6: std::net::Ipv6Addr) -> bool {
    (v6.segments()[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_targets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let rows = [
            (
                "203.0.113.5",
                "203.0.113.5",
                false,
                PassiveTarget::Announced,
            ),
            (
                "10.0.0.5",
                "203.0.113.5",
                false,
                PassiveTarget::Server(Unused::Untrusted {
                    class: "a private address",
                }),
            ),
            (
                "10.0.0.5",
                "203.0.113.5",
                true,
                PassiveTarget::Server(Unused::Implausible {
                    class: "a private address",
                }),
            ),
            (
                "0.0.0.0",
                "10.0.0.1",
                true,
                PassiveTarget::Server(Unused::Implausible {
                    class: "an unspecified address",
                }),
            ),
            (
                "10.0.0.5",
                "10.0.0.1",
                true,
                PassiveTarget::AnnouncedThenServer,
            ),
            (
                "198.51.100.7",
                "203.0.113.5",
                true,
                PassiveTarget::AnnouncedThenServer,
            ),
        ];
        for (announced, peer, trust, want) in rows {
            assert_eq!(
                PassiveTarget::choose(ip(announced), ip(peer), trust),
                want,
                "{announced} from {peer}, trust {trust}"
            );
        }
    }

    #[test]
    fn address_classes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let server = ip("203.0.113.5");
        for (a, class) in [
            ("0.0.0.0", "an unspecified address"),
            ("::1", "an address of the other IP family"),
            ("127.0.0.1", "a loopback address"),
            ("169.254.1.1", "a link-local address"),
            ("192.168.1.1", "a private address"),
            ("198.51.100.7", "a public address"),
        ] {
            assert_eq!(address_class(ip(a), server), class, "{a}");
        }
        assert_eq!(
            address_class(ip("fe80::1"), ip("2001:db8::1")),
            "a link-local address"
        );
        assert_eq!(
            address_class(ip("fd00::1"), ip("2001:db8::1")),
            "a private address"
        );
    }
}
