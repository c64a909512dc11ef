//! The PROXY protocol header (HAProxy's specification, versions 1 and 2) that a load balancer
//! sends first on a connection it relays, naming the client it came from. Sans-IO: [`parse`]
//! looks at the bytes received so far and says whether the header is complete, how long it is,
//! and what it says; a caller reads exactly that many bytes and no more (the FTP session that
//! follows is the server's to begin).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes a version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The longest version 2 header accepted: the 16 fixed bytes and up to 1 KiB of addresses
/// and TLVs (HAProxy sends far less).
pub const V2_MAX: usize = 16 + 1024;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The proxy speaks for itself (a health check, or v1 `UNKNOWN`): the connection's own
    /// addresses stand.
    Local,
    /// Relayed: the client `source` connected to `destination` on the proxy.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// At least this many bytes in all are needed before more can be said.
    Need(usize),
    /// A complete header, `len` bytes long.
    Done { header: Header, len: usize },
}

/// Looks at the start of a connection. Never reads past the header: `Need(n)` asks for bytes
/// up to `n` in all, and `Done` gives the header's exact length.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(V2_SIGNATURE.len());
    let may_be_v2 = buf.get(..n) == V2_SIGNATURE.get(..n);
    let m = buf.len().min(V1_PREFIX.len());
    let may_be_v1 = buf.get(..m) == V1_PREFIX.get(..m);
    if !may_be_v1 && !may_be_v2 {
        return Err(ProxyError::NotProxy);
    }
    // The shortest header of either version is longer than 6 bytes: asking for 6 never reads
    // into what follows (`PROXY UNKNOWN\r\n` is 15).
    if buf.len() < V1_PREFIX.len() {
        return Ok(Parsed::Need(V1_PREFIX.len()));
    }
    if may_be_v2 {
        return parse_v2(buf);
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::Malformed("v1 header longer than 107 bytes"));
        }
        return Ok(Parsed::Need(buf.len() + 1));
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(ProxyError::Malformed("v1 header longer than 107 bytes"));
    }
    let line = std::str::from_utf8(buf.get(..end).unwrap_or_default())
        .map_err(|_| ProxyError::Malformed("v1 header is not ASCII"))?;
    let mut words = line.split(' ');
    let _proxy = words.next();
    let family = words.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Parsed::Done {
            header: Header::Local,
            len,
        });
    }
    let fields: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::Malformed(
            "v1 header needs 4 fields after the family",
        ));
    };
    let ip = |text: &str| -> Result<IpAddr, ProxyError> {
        match family {
            "TCP4" => text
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| ProxyError::Malformed("bad TCP4 address")),
            "TCP6" => text
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| ProxyError::Malformed("bad TCP6 address")),
            _ => Err(ProxyError::Malformed(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            )),
        }
    };
    let port = |text: &str| -> Result<u16, ProxyError> {
        // Decimal without a sign or leading zeros, as the specification writes them.
        if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
            return Err(ProxyError::Malformed("bad port"));
        }
        text.parse::<u16>()
            .map_err(|_| ProxyError::Malformed("bad port"))
    };
    Ok(Parsed::Done {
        header: Header::Proxied {
            source: SocketAddr::new(ip(src)?, port(sport)?),
            destination: SocketAddr::new(ip(dst)?, port(dport)?),
        },
        len,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < 16 {
        return Ok(Parsed::Need(16));
    }
    let byte = |i: usize| buf.get(i).copied().unwrap_or(0);
    let version_command = byte(12);
    let family = byte(13);
    let body = usize::from(u16::from_be_bytes([byte(14), byte(15)]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(ProxyError::Malformed("v2 header longer than 1,040 bytes"));
    }
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    if buf.len() < len {
        return Ok(Parsed::Need(len));
    }
    let addresses = buf.get(16..len).unwrap_or_default();
    let header = match version_command & 0x0f {
        0x0 => Header::Local,
        0x1 => match family >> 4 {
            // AF_UNSPEC: the proxy does not say; the connection's own addresses stand.
            0x0 => Header::Local,
            0x1 => {
                let a: [u8; 12] = addresses
                    .get(..12)
                    .and_then(|a| a.try_into().ok())
                    .ok_or(ProxyError::Malformed("v2 IPv4 addresses cut short"))?;
                let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
                Header::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]])),
                    destination: SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]])),
                }
            }
            0x2 => {
                let a: [u8; 36] = addresses
                    .get(..36)
                    .and_then(|a| a.try_into().ok())
                    .ok_or(ProxyError::Malformed("v2 IPv6 addresses cut short"))?;
                let ip = |o: usize| {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&a[o..o + 16]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                Header::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]])),
                    destination: SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]])),
                }
            }
            // AF_UNIX and the rest: no address an FTP server could use.
            _ => Header::Local,
        },
        _ => {
            return Err(ProxyError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ));
        }
    };
    if let Header::Proxied { .. } = header {
        // Only TCP (STREAM) is relayed to an FTP listener.
        if family & 0x0f != 0x1 {
            return Err(ProxyError::Malformed("v2 transport is not STREAM"));
        }
    }
    Ok(Parsed::Done { header, len })
}

/// A version 1 header for `source` → `destination` (both of one family), as a proxy writes it.
pub fn v1_header(source: SocketAddr, destination: SocketAddr) -> String {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
}

/// A version 2 PROXY header for `source` → `destination` (both of one family).
pub fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    let mut body = Vec::new();
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21);
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            body.extend_from_slice(&six(s));
            body.extend_from_slice(&six(d));
        }
    }
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_both_families_and_unknown() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 21\r\nUSER x";
        assert_eq!(
            parse(h),
            Ok(Parsed::Done {
                header: Header::Proxied {
                    source: addr("192.0.2.7:40000"),
                    destination: addr("10.0.0.1:21"),
                },
                len: 40,
            })
        );
        let six = v1_header(addr("[2001:db8::1]:5000"), addr("[2001:db8::2]:21"));
        let Ok(Parsed::Done { header, len }) = parse(six.as_bytes()) else {
            panic!("{six}");
        };
        assert_eq!(len, six.len());
        assert_eq!(
            header,
            Header::Proxied {
                source: addr("[2001:db8::1]:5000"),
                destination: addr("[2001:db8::2]:21")
            }
        );
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Parsed::Done {
                header: Header::Local,
                len: 15
            })
        ));
    }

    #[test]
    fn v2_both_families_and_local() {
        for (s, d) in [
            ("192.0.2.7:40000", "10.0.0.1:21"),
            ("[2001:db8::1]:5000", "[2001:db8::2]:21"),
        ] {
            let mut bytes = v2_header(addr(s), addr(d));
            let len = bytes.len();
            bytes.extend_from_slice(b"more");
            assert_eq!(
                parse(&bytes),
                Ok(Parsed::Done {
                    header: Header::Proxied {
                        source: addr(s),
                        destination: addr(d)
                    },
                    len
                })
            );
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            parse(&local),
            Ok(Parsed::Done {
                header: Header::Local,
                len: 16
            })
        );
    }

    #[test]
    fn partial_headers_ask_for_exactly_what_is_missing() {
        let v2 = v2_header(addr("192.0.2.7:1"), addr("10.0.0.1:21"));
        assert_eq!(parse(&v2[..5]), Ok(Parsed::Need(6)));
        assert_eq!(parse(&v2[..6]), Ok(Parsed::Need(16)));
        assert_eq!(parse(b""), Ok(Parsed::Need(6)));
        // The shortest header followed by a byte: its length, not more.
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\nX"),
            Ok(Parsed::Done {
                header: Header::Local,
                len: 15
            })
        );
        assert_eq!(parse(&v2[..16]), Ok(Parsed::Need(v2.len())));
        assert_eq!(parse(b"PRO"), Ok(Parsed::Need(6)));
        assert_eq!(parse(b"PROXY TCP4 1"), Ok(Parsed::Need(13)));
    }

    #[test]
    fn what_is_refused() {
        assert_eq!(parse(b"USER anonymous\r\n"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"220 hello"), Err(ProxyError::NotProxy));
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 070000\r\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 ::1 1 2\r\n").is_err());
        assert!(parse(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n").is_err());
        assert!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20)).is_err());
        // Version 2 with an absurd length, a wrong version, a body too short for its family.
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(parse(&long).is_err());
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
        assert!(parse(&v3).is_err());
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(parse(&short).is_err());
    }

    #[test]
    fn any_bytes_never_panic() {
        // A cheap sweep: every prefix of a few headers with each byte flipped.
        let samples = [
            v2_header(addr("192.0.2.7:1"), addr("10.0.0.1:21")),
            v2_header(addr("[::1]:1"), addr("[::2]:21")),
            v1_header(addr("192.0.2.7:1"), addr("10.0.0.1:21")).into_bytes(),
        ];
        for s in samples {
            for i in 0..s.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut b = s.clone();
                    b[i] ^= flip;
                    for end in 0..=b.len() {
                        let _ = parse(&b[..end]);
                    }
                }
            }
        }
    }
}
