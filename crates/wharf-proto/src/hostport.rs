//! Data-connection address encodings: PORT and PASV (RFC 959 h1,h2,h3,h4,p1,p2), EPRT and EPSV
//! (RFC 2428).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

/// Why a host-port argument could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostPortError {
    #[error("expected six comma-separated numbers 0-255")]
    BadPort,
    #[error("malformed EPRT argument")]
    BadEprt,
    /// EPRT/EPSV named a network protocol other than 1 (IPv4) or 2 (IPv6).
    #[error("network protocol not supported")]
    UnknownProtocol,
    #[error("malformed passive reply")]
    BadReply,
}

/// Parses the PORT argument `h1,h2,h3,h4,p1,p2`.
pub fn parse_port(arg: &[u8]) -> Result<SocketAddrV4, HostPortError> {
    let text = std::str::from_utf8(arg).map_err(|_| HostPortError::BadPort)?;
    let nums = parse_six(text.trim()).ok_or(HostPortError::BadPort)?;
    Ok(six_to_addr(nums))
}

fn parse_six(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(',');
    for slot in &mut out {
        let p = parts.next()?.trim();
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = p.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

fn six_to_addr(n: [u8; 6]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(n[0], n[1], n[2], n[3]),
        u16::from(n[4]) << 8 | u16::from(n[5]),
    )
}

/// The `h1,h2,h3,h4,p1,p2` form of an address.
pub fn format_host_port(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let port = addr.port();
    format!("{a},{b},{c},{d},{},{}", port >> 8, port & 0xff)
}

/// The text of a 227 reply: exactly `Entering Passive Mode (h1,h2,h3,h4,p1,p2).`, the form NAT
/// helpers parse.
pub fn pasv_reply_text(addr: SocketAddrV4) -> String {
    format!("Entering Passive Mode ({}).", format_host_port(addr))
}

/// Extracts the address from a 227 reply text. Tolerates the variants servers send: with or
/// without parentheses, with trailing text.
pub fn parse_pasv_reply(text: &[u8]) -> Result<SocketAddrV4, HostPortError> {
    let text = std::str::from_utf8(text).map_err(|_| HostPortError::BadReply)?;
    // Find the first run of six comma-separated numbers.
    let bytes = text.as_bytes();
    for start in 0..bytes.len() {
        if !bytes[start].is_ascii_digit() || (start > 0 && bytes[start - 1].is_ascii_digit()) {
            continue;
        }
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
            .map_or(text.len(), |e| start + e);
        if let Some(n) = parse_six(text[start..end].trim_end_matches([',', ' '])) {
            return Ok(six_to_addr(n));
        }
    }
    Err(HostPortError::BadReply)
}

/// Parses the EPRT argument `<d><proto><d><addr><d><port><d>` (RFC 2428 §2).
pub fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, HostPortError> {
    let text = std::str::from_utf8(arg).map_err(|_| HostPortError::BadEprt)?;
    let text = text.trim();
    let delim = text.chars().next().ok_or(HostPortError::BadEprt)?;
    if !(33..=126).contains(&(delim as u32)) {
        return Err(HostPortError::BadEprt);
    }
    let parts: Vec<&str> = text.split(delim).collect();
    // "" proto addr port ""
    let [first, proto, addr, port, last] = parts.as_slice() else {
        return Err(HostPortError::BadEprt);
    };
    if !first.is_empty() || !last.is_empty() {
        return Err(HostPortError::BadEprt);
    }
    let port: u16 = port.parse().map_err(|_| HostPortError::BadEprt)?;
    let ip: IpAddr = match *proto {
        "1" => IpAddr::V4(addr.parse().map_err(|_| HostPortError::BadEprt)?),
        "2" => IpAddr::V6(addr.parse().map_err(|_| HostPortError::BadEprt)?),
        _ => return Err(HostPortError::UnknownProtocol),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The EPRT argument for an address.
pub fn format_eprt(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("|1|{ip}|{}|", addr.port()),
        IpAddr::V6(ip) => format!("|2|{ip}|{}|", addr.port()),
    }
}

/// The text of a 229 reply: `Entering Extended Passive Mode (|||port|)`.
pub fn epsv_reply_text(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// Extracts the port from a 229 reply text.
pub fn parse_epsv_reply(text: &[u8]) -> Result<u16, HostPortError> {
    let open = text
        .iter()
        .position(|&b| b == b'(')
        .ok_or(HostPortError::BadReply)?;
    let inner = text.get(open + 1..).ok_or(HostPortError::BadReply)?;
    let close = inner
        .iter()
        .position(|&b| b == b')')
        .ok_or(HostPortError::BadReply)?;
    let inner = std::str::from_utf8(&inner[..close]).map_err(|_| HostPortError::BadReply)?;
    let d = inner.chars().next().ok_or(HostPortError::BadReply)?;
    let parts: Vec<&str> = inner.split(d).collect();
    match parts.as_slice() {
        ["", "", "", port, ""] => port.parse().map_err(|_| HostPortError::BadReply),
        _ => Err(HostPortError::BadReply),
    }
}

/// The argument of `EPSV`: nothing, a network protocol number, or `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    Any,
    Protocol(u8),
    All,
}

/// Parses the EPSV argument.
pub fn parse_epsv_arg(arg: &[u8]) -> Result<EpsvArg, HostPortError> {
    let arg = arg.trim_ascii();
    if arg.is_empty() {
        return Ok(EpsvArg::Any);
    }
    if arg.eq_ignore_ascii_case(b"ALL") {
        return Ok(EpsvArg::All);
    }
    match arg {
        b"1" => Ok(EpsvArg::Protocol(1)),
        b"2" => Ok(EpsvArg::Protocol(2)),
        _ if arg.iter().all(u8::is_ascii_digit) => Err(HostPortError::UnknownProtocol),
        _ => Err(HostPortError::BadEprt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_round_trip() {
        let a = parse_port(b"127,0,0,1,195,80").unwrap();
        assert_eq!(a, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(format_host_port(a), "127,0,0,1,195,80");
    }

    #[test]
    fn port_rejects_bad_forms() {
        for bad in [
            &b"127,0,0,1,195"[..],
            b"127,0,0,1,195,80,1",
            b"256,0,0,1,1,1",
            b"a,b,c,d,e,f",
            b"",
            b"1,,0,1,2,3",
            b"-1,0,0,1,1,1",
        ] {
            assert_eq!(parse_port(bad), Err(HostPortError::BadPort), "{bad:?}");
        }
    }

    #[test]
    fn pasv_reply_round_trip() {
        let a: SocketAddrV4 = "192.0.2.7:50012".parse().unwrap();
        let text = pasv_reply_text(a);
        assert_eq!(text, "Entering Passive Mode (192,0,2,7,195,92).");
        assert_eq!(parse_pasv_reply(text.as_bytes()).unwrap(), a);
        assert_eq!(
            parse_pasv_reply(b"Entering Passive Mode 10,0,0,1,4,1").unwrap(),
            "10.0.0.1:1025".parse().unwrap()
        );
        assert_eq!(
            parse_pasv_reply(b"=127,0,0,1,200,10"),
            Ok("127.0.0.1:51210".parse().unwrap())
        );
        assert!(parse_pasv_reply(b"Entering Passive Mode").is_err());
    }

    #[test]
    fn eprt_v4_v6() {
        assert_eq!(
            parse_eprt(b"|1|132.235.1.2|6275|").unwrap(),
            "132.235.1.2:6275".parse().unwrap()
        );
        assert_eq!(
            parse_eprt(b"|2|1080::8:800:200C:417A|5282|").unwrap(),
            "[1080::8:800:200C:417A]:5282".parse().unwrap()
        );
        assert_eq!(
            parse_eprt(b"!1!10.0.0.1!2000!").unwrap(),
            "10.0.0.1:2000".parse().unwrap()
        );
        let a: SocketAddr = "[::1]:4000".parse().unwrap();
        assert_eq!(parse_eprt(format_eprt(a).as_bytes()).unwrap(), a);
    }

    #[test]
    fn eprt_errors() {
        assert_eq!(
            parse_eprt(b"|3|1.2.3.4|5|"),
            Err(HostPortError::UnknownProtocol)
        );
        assert_eq!(parse_eprt(b"|1|::1|5|"), Err(HostPortError::BadEprt));
        assert_eq!(
            parse_eprt(b"|1|1.2.3.4|70000|"),
            Err(HostPortError::BadEprt)
        );
        assert_eq!(parse_eprt(b"|1|1.2.3.4|5"), Err(HostPortError::BadEprt));
        assert_eq!(parse_eprt(b""), Err(HostPortError::BadEprt));
    }

    #[test]
    fn epsv_forms() {
        assert_eq!(
            epsv_reply_text(50012),
            "Entering Extended Passive Mode (|||50012|)"
        );
        assert_eq!(
            parse_epsv_reply(b"Entering Extended Passive Mode (|||50012|)"),
            Ok(50012)
        );
        assert!(parse_epsv_reply(b"Entering Extended Passive Mode (|1|2|3|)").is_err());
        assert_eq!(parse_epsv_arg(b""), Ok(EpsvArg::Any));
        assert_eq!(parse_epsv_arg(b"all"), Ok(EpsvArg::All));
        assert_eq!(parse_epsv_arg(b"2"), Ok(EpsvArg::Protocol(2)));
        assert_eq!(parse_epsv_arg(b"3"), Err(HostPortError::UnknownProtocol));
    }
}
