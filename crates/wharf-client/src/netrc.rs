//! `~/.netrc`: logins and passwords per host, as ftp(1), curl and lftp read them. Tokens are
//! separated by white space (or quoted with `"`, backslash escaping); `machine NAME` starts an
//! entry, `default` the entry for every other host; `login`, `password` and `account` belong to
//! the entry before them; `macdef NAME` is followed by a macro up to an empty line, skipped.

/// The login and password a `.netrc` gives for a host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub login: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .finish()
    }
}

/// The entry for `host` (compared without case) and, when `user` is given, that login: the
/// first `machine` entry that fits, else the `default` entry if it fits.
pub fn lookup(text: &str, host: &str, user: Option<&str>) -> Option<Credentials> {
    let mut default = None;
    for (machine, creds) in entries(text) {
        let fits = user.is_none_or(|u| creds.login.as_deref() == Some(u));
        if !fits {
            continue;
        }
        match machine {
            Some(m) if m.eq_ignore_ascii_case(host) => return Some(creds),
            Some(_) => {}
            None => {
                default.get_or_insert(creds);
            }
        }
    }
    default
}

/// Every entry: `(Some(machine) | None for default, credentials)`.
fn entries(text: &str) -> Vec<(Option<String>, Credentials)> {
    let mut out: Vec<(Option<String>, Credentials)> = Vec::new();
    let mut tokens = Tokens::new(text);
    while let Some(token) = tokens.next() {
        match token.as_str() {
            "machine" => {
                let name = tokens.next().unwrap_or_default();
                out.push((Some(name), empty()));
            }
            "default" => out.push((None, empty())),
            "login" | "password" | "account" => {
                let value = tokens.next();
                if let Some((_, creds)) = out.last_mut() {
                    match token.as_str() {
                        "login" => creds.login = value,
                        "password" => creds.password = value,
                        _ => {}
                    }
                }
            }
            "macdef" => {
                let _name = tokens.next();
                tokens.skip_macro();
            }
            _ => {}
        }
    }
    out
}

fn empty() -> Credentials {
    Credentials {
        login: None,
        password: None,
    }
}

struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Tokens<'a> {
        Tokens { rest: text }
    }

    /// A macro body runs to the first empty line.
    fn skip_macro(&mut self) {
        // The rest of the macdef line, then lines up to an empty one.
        let after_line = self.rest.find('\n').map_or("", |i| &self.rest[i + 1..]);
        let mut rest = after_line;
        loop {
            let (line, next) = match rest.find('\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            rest = next;
            if line.trim().is_empty() || rest.is_empty() {
                break;
            }
        }
        self.rest = rest;
    }
}

impl Iterator for Tokens<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let text = self.rest.trim_start();
        if text.is_empty() {
            self.rest = text;
            return None;
        }
        let mut out = String::new();
        let mut chars = text.char_indices();
        if text.starts_with('"') {
            chars.next();
            let mut end = text.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    c => out.push(c),
                }
            }
            self.rest = &text[end..];
            return Some(out);
        }
        let end = text.find(char::is_whitespace).unwrap_or(text.len());
        self.rest = &text[end..];
        Some(text[..end].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETRC: &str = "machine ftp.example.net login alice password s3cret\n\
        macdef init\nlogin mallory\npassword nope\n\n\
        machine other login bob password \"two words\\\"q\"\n\
        default login anonymous password guest@\n";

    #[test]
    fn machines_logins_default_and_macros() {
        let a = lookup(NETRC, "FTP.example.net", None).unwrap();
        assert_eq!(a.login.as_deref(), Some("alice"));
        assert_eq!(a.password.as_deref(), Some("s3cret"));
        // The macro's lines are not entries.
        assert!(lookup(NETRC, "ftp.example.net", Some("mallory")).is_none());
        let b = lookup(NETRC, "other", Some("bob")).unwrap();
        assert_eq!(b.password.as_deref(), Some("two words\"q"));
        let d = lookup(NETRC, "elsewhere", None).unwrap();
        assert_eq!(d.login.as_deref(), Some("anonymous"));
        assert!(lookup("", "x", None).is_none());
        assert!(lookup("machine", "x", None).is_none());
    }
}
