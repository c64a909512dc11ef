//! `ftp://[user[:password]@]host[:port]/path` URLs (RFC 1738 §3.2), and their FTPS forms:
//! `ftpes://` (explicit TLS with AUTH TLS, port 21) and `ftps://` (implicit TLS, port 990). The path is relative to the
//! directory the server puts the user in after login, as RFC 1738 and curl read it; a path that
//! should start at the server's root is written with `%2F` (`ftp://host/%2Fetc/motd`).

use crate::error::{Error, Result};

/// The default FTP control port.
pub const DEFAULT_PORT: u16 = 21;
/// The default port of implicit FTPS (`ftps://`).
pub const DEFAULT_IMPLICIT_PORT: u16 = 990;

/// Whether and how a URL asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// `ftp://`: clear (unless the user adds `--tls`).
    #[default]
    None,
    /// `ftpes://`: AUTH TLS on the control port.
    Explicit,
    /// `ftps://`: TLS from the first byte.
    Implicit,
}

/// A parsed FTP URL.
#[derive(Clone, PartialEq, Eq)]
pub struct FtpUrl {
    /// User name; `None` means anonymous.
    pub user: Option<String>,
    /// Password from the URL, if it carried one (better kept out of URLs: it shows in `ps`).
    pub password: Option<String>,
    /// Host name or address literal (an IPv6 literal without its brackets).
    pub host: String,
    pub port: u16,
    /// The path as bytes, percent-decoded, without the `/` that separates it from the host.
    pub path: Vec<u8>,
    /// True when the URL path ended with `/`, i.e. it names a directory.
    pub trailing_slash: bool,
    pub security: Security,
}

impl std::fmt::Debug for FtpUrl {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpUrl")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &String::from_utf8_lossy(&self.path))
            .finish()
    }
}

impl FtpUrl {
    /// Parses a URL. Errors are [`Error::Usage`] with a message naming what is wrong.
    pub fn parse(text: &str) -> Result<FtpUrl> {
        let bad = |why: &str| Error::Usage(format!("bad URL {:?}: {why}", redact(text)));
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("expected ftp://host/path"))?;
        let security = match scheme.to_ascii_lowercase().as_str() {
            "ftp" => Security::None,
            "ftpes" => Security::Explicit,
            "ftps" => Security::Implicit,
            _ => return Err(bad("the scheme must be ftp://, ftpes:// or ftps://")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (u, p) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let u = decode_utf8(u).ok_or_else(|| bad("the user name is not valid"))?;
                if u.is_empty() {
                    return Err(bad("empty user name"));
                }
                let p = match p {
                    Some(p) => {
                        Some(decode_utf8(p).ok_or_else(|| bad("the password is not valid"))?)
                    }
                    None => None,
                };
                (Some(u), p)
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("missing ] after an IPv6 address"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address between [ ]"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None | Some("") if security == Security::Implicit => DEFAULT_IMPLICIT_PORT,
            None | Some("") => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        // A `;type=i` suffix (RFC 1738) carries nothing we need: the client picks the type.
        let path = match path.rfind(";type=") {
            Some(i) => &path[..i],
            None => path,
        };
        let trailing_slash = path.is_empty() || path.ends_with('/');
        let path = percent_decode(path).ok_or_else(|| bad("bad %-escape in the path"))?;
        if path.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad(
                "the path contains CR, LF or NUL, which FTP cannot send",
            ));
        }
        Ok(FtpUrl {
            user,
            password,
            host: host.to_string(),
            port,
            path,
            trailing_slash,
            security,
        })
    }

    /// `host:port`, with brackets around an IPv6 literal.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path without a trailing `/` (what commands are sent with); empty for the login dir.
    pub fn path_trimmed(&self) -> &[u8] {
        let mut p = self.path.as_slice();
        while p.len() > 1 && p.ends_with(b"/") {
            p = &p[..p.len() - 1];
        }
        p
    }

    /// The last component of the path, if there is one.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.path_trimmed()
            .rsplit(|&b| b == b'/')
            .next()
            .filter(|n| !n.is_empty())
    }
}

/// The URL with any password replaced by `****`, for messages.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:****{}{path}", &authority[at..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

fn decode_utf8(text: &str) -> Option<String> {
    String::from_utf8(percent_decode(text)?).ok()
}

/// Decodes `%XX` escapes; `None` for a malformed escape.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_form() {
        let u = FtpUrl::parse("ftp://demo:s%40cr%3At@example.net:2121/pub/a%20b.txt").unwrap();
        assert_eq!(u.user.as_deref(), Some("demo"));
        assert_eq!(u.password.as_deref(), Some("s@cr:t"));
        assert_eq!((u.host.as_str(), u.port), ("example.net", 2121));
        assert_eq!(u.path, b"pub/a b.txt");
        assert_eq!(u.file_name(), Some(&b"a b.txt"[..]));
        assert!(!u.trailing_slash);
        assert!(!format!("{u:?}").contains("s@cr"));
    }

    #[test]
    fn anonymous_root_and_ipv6() {
        let u = FtpUrl::parse("ftp://[::1]:21/").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port),
            (None, "::1", 21)
        );
        assert_eq!(u.path, b"");
        assert!(u.trailing_slash);
        assert_eq!(u.host_port(), "[::1]:21");
        let u = FtpUrl::parse("FTP://host").unwrap();
        assert_eq!((u.port, u.path.as_slice()), (21, &b""[..]));
        let u = FtpUrl::parse("ftp://host/%2Fetc/dir/").unwrap();
        assert_eq!(u.path_trimmed(), b"/etc/dir");
        assert!(u.trailing_slash);
    }

    #[test]
    fn tls_schemes() {
        let u = FtpUrl::parse("ftps://h/x").unwrap();
        assert_eq!((u.security, u.port), (Security::Implicit, 990));
        let u = FtpUrl::parse("FTPES://h:2121/x").unwrap();
        assert_eq!((u.security, u.port), (Security::Explicit, 2121));
        let u = FtpUrl::parse("ftpes://h/").unwrap();
        assert_eq!((u.security, u.port), (Security::Explicit, 21));
        assert_eq!(FtpUrl::parse("ftp://h/").unwrap().security, Security::None);
    }

    #[test]
    fn errors() {
        for bad in [
            "http://x/",
            "ftp://",
            "ftp://host:0/",
            "ftp://host:99999/",
            "ftp://[::1/",
            "ftp://host/a%0Db",
            "ftp://host/%zz",
            "ftp://@host/",
            "host/path",
        ] {
            assert!(matches!(FtpUrl::parse(bad), Err(Error::Usage(_))), "{bad}");
        }
        let Err(e) = FtpUrl::parse("ftp://u:hunter2@host:0/x") else {
            panic!()
        };
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(redact("ftp://u:p@h/a:b@c"), "ftp://u:****@h/a:b@c");
        assert_eq!(redact("ftp://h/x"), "ftp://h/x");
    }
}
