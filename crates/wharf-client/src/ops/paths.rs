//! `rm`, `mkdir`, `rmdir` of a path or a pattern, and the checks of `mv` made before anything
//! is sent.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::ops::Events;
use crate::ops::pattern::expand;
use crate::tree;
use crate::url::FtpUrl;

/// What to do to a remote path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOp {
    /// DELE; of a pattern, every file it matches.
    Rm,
    /// MKD; with `parents`, each missing directory along the path and no failure when it
    /// exists.
    Mkdir { parents: bool },
    /// RMD.
    Rmdir,
}

/// Does `op` to `path`. Every file a pattern matches is tried; each failure is told to
/// `events`, and the first one is returned.
pub async fn apply(
    client: &mut Client,
    op: PathOp,
    path: &[u8],
    events: &dyn Events,
) -> Result<()> {
    match op {
        PathOp::Rm => {
            let Some(matched) = expand(client, path, false).await? else {
                return client.delete(path).await;
            };
            let mut failed = None;
            for (p, _) in matched {
                if let Err(e) = client.delete(&p).await {
                    events.message(&e.to_string());
                    failed.get_or_insert(e);
                }
            }
            failed.map_or(Ok(()), Err)
        }
        PathOp::Mkdir { parents: true } => tree::mkdir_p(client, path).await,
        PathOp::Mkdir { parents: false } => client.mkdir(path).await,
        PathOp::Rmdir => client.rmdir(path).await,
    }
}

/// The path `mv` renames `from` to: `new_path` as given (relative to the login directory, or
/// absolute), or the path of a URL of the same server. Refused before any connection when it
/// is empty, names another server, or holds CR, LF or NUL (which would split the command).
pub fn rename_target(from: &FtpUrl, new_path: &str) -> Result<Vec<u8>> {
    let to = if new_path.contains("://") {
        let other = FtpUrl::parse(new_path)?;
        if (other.host.as_str(), other.port) != (from.host.as_str(), from.port) {
            return Err(Error::Usage(
                "mv renames on one server: the new URL must name the same host and port".into(),
            ));
        }
        other.path_trimmed().to_vec()
    } else {
        new_path.as_bytes().to_vec()
    };
    if to.is_empty() {
        return Err(Error::Usage("the new path is empty".into()));
    }
    if to.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Err(Error::Usage(
            "the new path contains CR, LF or NUL, which an FTP command cannot carry".into(),
        ));
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_targets_checked_first() {
        let from = FtpUrl::parse("ftp://h:2121/a").unwrap();
        let ok = [
            ("b", &b"b"[..]),
            ("/x/b", b"/x/b"),
            ("ftp://h:2121/c/d", b"c/d"),
        ];
        for (text, want) in ok {
            assert_eq!(rename_target(&from, text).unwrap(), want, "{text}");
        }
        for bad in ["", "a\r\nDELE x", "a\0b", "ftp://other:2121/c", "ftp://h/c"] {
            assert!(rename_target(&from, bad).is_err(), "{bad:?}");
        }
    }
}
