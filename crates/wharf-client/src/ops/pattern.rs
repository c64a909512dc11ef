//! Patterns in the last component of a remote path (`logs/*.gz`), and the names a listing may
//! give to local files.

use std::path::PathBuf;

use wharf_proto::{FileKind, ReplyCode, glob};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::tree;
use wharf_proto::entry::Entry;

/// `dir/pat*` → (`dir`, Some(`pat*`)) when the last component is a pattern.
pub fn split_pattern(path: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (dir, last) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            path.get(..i).unwrap_or_default(),
            path.get(i + 1..).unwrap_or_default(),
        ),
        None => (&b""[..], path),
    };
    if glob::is_pattern(last) {
        let dir = if dir.is_empty() && path.starts_with(b"/") {
            &b"/"[..]
        } else {
            dir
        };
        (dir, Some(last))
    } else {
        (path, None)
    }
}

/// What a pattern in the last component of `path` matches: each entry of that kind (files,
/// or anything but directories) with its path; `None` when `path` has no pattern. Matching
/// nothing is an error that names the pattern.
pub async fn expand(
    client: &mut Client,
    path: &[u8],
    files_only: bool,
) -> Result<Option<Vec<(Vec<u8>, Entry)>>> {
    let (dir, Some(pattern)) = split_pattern(path) else {
        return Ok(None);
    };
    let matched: Vec<(Vec<u8>, Entry)> = client
        .list(dir)
        .await?
        .into_iter()
        .filter(|e| {
            let kind = if files_only {
                e.kind == FileKind::File
            } else {
                e.kind != FileKind::Dir
            };
            kind && tree::is_safe_name(&e.name) && glob::matches(pattern, &e.name)
        })
        .map(|e| (tree::join_remote(dir, &e.name), e))
        .collect();
    if matched.is_empty() {
        return Err(Error::Usage(format!(
            "no file matches {}",
            String::from_utf8_lossy(path)
        )));
    }
    Ok(Some(matched))
}

/// Whether a listing failed because `path` is no directory (550, 501 or 450 to MLSD of a
/// file), rather than because of the data connection or the session.
pub fn names_no_directory(e: &Error, path: &[u8]) -> bool {
    !path.is_empty()
        && !e.is_data_connection_failure()
        && e.reply_code().is_some_and(ReplyCode::names_no_directory)
}

/// A remote name as a local file name, refused when it could reach outside the directory it
/// is written to (`..`, a `/`, NUL).
pub fn local_name(name: &[u8]) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if !tree::is_safe_name(name) {
        return Err(Error::Usage(format!(
            "cannot make a local name of {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_split_off_the_last_component() {
        type Case<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);
        let cases: [Case; 6] = [
            (b"logs/*.gz", b"logs", Some(b"*.gz")),
            (b"/*.gz", b"/", Some(b"*.gz")),
            (b"*.gz", b"", Some(b"*.gz")),
            (b"logs/a.gz", b"logs/a.gz", None),
            (b"lo*s/a.gz", b"lo*s/a.gz", None),
            (b"a/b/file?", b"a/b", Some(b"file?")),
        ];
        for (path, dir, pattern) in cases {
            assert_eq!(split_pattern(path), (dir, pattern), "{path:?}");
        }
    }

    #[test]
    fn local_names_stay_inside() {
        assert!(local_name(b"..").is_err());
        assert!(local_name(b"a/b").is_err());
        assert_eq!(local_name(b"a b").unwrap(), PathBuf::from("a b"));
    }
}
