//! `get`: what a URL names decides how it is copied — a pattern's files, a tree (`-r`), one
//! file to stdout, one file over several sessions (`--segments`), or one file through its
//! partial file — and the retry policy gives a broken transfer its further tries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wharf_net::digest::Digest;
use wharf_proto::{FileKind, HashAlgorithm};

use crate::client::{Client, Progress};
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::ops::pattern::{expand, local_name, split_pattern};
use crate::ops::{Events, ProgressOf};
use crate::part::{self, Counting, Resume, Retrying};
use crate::retry::RetryPolicy;
use crate::segments::{self, SegmentReport};
use crate::tree::{self, TreeOptions, TreeReport};
use crate::url::FtpUrl;
use crate::verify::{self, Verify};

/// What to download, and how.
#[derive(Debug, Clone)]
pub struct GetRequest {
    pub url: FtpUrl,
    /// The URL as messages show it (its password hidden).
    pub shown_url: String,
    /// Where to: a file or directory; `-` for stdout; `None` for the remote name here.
    pub local: Option<PathBuf>,
    /// Copy a directory tree.
    pub recursive: bool,
    /// TYPE A: no size is asked (it would not be the size of what arrives).
    pub ascii: bool,
    /// One file over this many sessions, each a byte range.
    pub segments: Option<usize>,
    /// Sessions, resume (`-c`) and retries (`--retry`) of every transfer.
    pub tree: TreeOptions,
    /// Compare each file with the server's hash (`--verify`).
    pub verify: Verify,
}

/// What a download did, for the caller's result lines.
#[derive(Debug)]
pub enum GetDone {
    /// One file (or stdout), shown as `shown`; its size when the server told it; the
    /// algorithm that verified it (`--verify`).
    File {
        shown: String,
        size: Option<u64>,
        verified: Option<HashAlgorithm>,
    },
    /// One file over several sessions.
    Segments {
        shown: String,
        size: u64,
        report: SegmentReport,
        verified: Option<HashAlgorithm>,
    },
    /// A tree, or the files a pattern matched: each file's failure is in the report.
    Tree(TreeReport),
}

impl GetRequest {
    fn to_stdout(&self) -> bool {
        self.local.as_deref() == Some(Path::new("-"))
    }

    /// The trees' options, with this request's `verify`.
    fn tree_options(&self) -> TreeOptions {
        TreeOptions {
            verify: self.verify,
            ..self.tree
        }
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.tree.retries)
    }

    fn is_a_directory(&self, how: &str) -> Error {
        Error::Usage(format!(
            "{} {how} a directory: use -r to copy it, or `wharf ls` to list it",
            self.shown_url
        ))
    }
}

/// Downloads what `request` names over sessions from `connector`.
pub async fn get(
    connector: &Connector,
    request: &GetRequest,
    events: Arc<dyn Events>,
) -> Result<GetDone> {
    let remote = request.url.path_trimmed().to_vec();
    if let (_, Some(_)) = split_pattern(&remote) {
        return get_matching(connector, request, &remote, events).await;
    }
    if request.recursive {
        return get_tree(connector, request, &remote, events).await;
    }
    if remote.is_empty() || request.url.trailing_slash {
        return Err(request.is_a_directory("names"));
    }
    let name = request
        .url
        .file_name()
        .ok_or_else(|| Error::Usage("the URL names no file".into()))?
        .to_vec();
    if request.to_stdout() {
        return get_to_stdout(connector, request, &remote, &name, events).await;
    }
    get_file(connector, request, &remote, &name, events).await
}

/// `get -r`: the tree under `remote` into the local directory (the remote name by default).
async fn get_tree(
    connector: &Connector,
    request: &GetRequest,
    remote: &[u8],
    events: Arc<dyn Events>,
) -> Result<GetDone> {
    if request.to_stdout() {
        return Err(Error::Usage("-r cannot write to stdout".into()));
    }
    let local = match (&request.local, request.url.file_name()) {
        (Some(l), _) => l.clone(),
        (None, Some(name)) => local_name(name)?,
        (None, None) => PathBuf::from("."),
    };
    events.partial(&local);
    let client = connector.open().await?;
    let progress = ProgressOf::shared(&events);
    let report = tree::download_tree(
        client,
        connector,
        remote,
        &local,
        request.tree_options(),
        progress,
    )
    .await?;
    Ok(GetDone::Tree(report))
}

/// `get 'ftp://h/dir/*.log' [DIR]`: every file the pattern matches, into DIR (default: here,
/// made when missing as `-r` does).
async fn get_matching(
    connector: &Connector,
    request: &GetRequest,
    remote: &[u8],
    events: Arc<dyn Events>,
) -> Result<GetDone> {
    if request.to_stdout() {
        return Err(Error::Usage("a pattern cannot be written to stdout".into()));
    }
    let target = request.local.clone().unwrap_or_else(|| PathBuf::from("."));
    if target.exists() && !target.is_dir() {
        return Err(Error::Usage(format!(
            "{}: a pattern needs a local directory to download into",
            target.display()
        )));
    }
    let mut client = connector.open().await?;
    let files: Vec<(Vec<u8>, PathBuf, Option<u64>)> = expand(&mut client, remote, true)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|(path, e)| {
            use std::os::unix::ffi::OsStrExt;
            let local = target.join(std::ffi::OsStr::from_bytes(&e.name));
            (path, local, e.size)
        })
        .collect();
    if !files.is_empty() && !target.exists() {
        std::fs::create_dir_all(&target).map_err(|e| Error::local(e).at(&target))?;
    }
    events.partial(&target);
    let progress = ProgressOf::shared(&events);
    let report =
        tree::download_files(client, connector, files, request.tree_options(), progress).await?;
    Ok(GetDone::Tree(report))
}

/// One file to stdout. What stdout has had cannot be taken back: a further try resumes
/// after it.
async fn get_to_stdout(
    connector: &Connector,
    request: &GetRequest,
    remote: &[u8],
    name: &[u8],
    events: Arc<dyn Events>,
) -> Result<GetDone> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let written = AtomicU64::new(0);
    let say = |m: &str| events.message(m);
    // What went to stdout, hashed as it went: every try writes on after the last, so one
    // digest runs across them.
    let digest: std::sync::Mutex<Option<Digest>> = std::sync::Mutex::new(None);
    let verified = std::sync::Mutex::new(None);
    request
        .policy()
        .run(&shown, &say, |_| {
            let (written, events, digest, verified) = (&written, &events, &digest, &verified);
            let (shown, say) = (&shown, &say);
            async move {
                let mut client = connector.open().await?;
                let from = written.load(Ordering::Relaxed);
                let check = verify::plan(&client, request.verify, request.ascii, shown, say)?;
                let running = digest.lock().ok().and_then(|mut d| d.take());
                let running = match (check, running) {
                    (Some(how), None) if from == 0 => Some(Digest::new(how.algorithm())),
                    (Some(how), Some(d)) if d.algorithm() == how.algorithm() => Some(d),
                    // The bytes already written are gone: a different algorithm cannot be
                    // started part way.
                    (Some(_), _) => {
                        return Err(Error::Verify(format!(
                            "{shown}: cannot verify: the retry's session offers another hash"
                        )));
                    }
                    (None, _) => None,
                };
                let mut out = Counting::new(verify::Hashing::new(tokio::io::stdout(), running));
                let progress = ProgressOf(events.clone());
                let result = client.retrieve(remote, from, &mut out, &progress).await;
                written.fetch_add(out.written, Ordering::Relaxed);
                let running = out.inner.digest.take();
                if let Ok(mut d) = digest.lock() {
                    *d = running;
                }
                result?;
                if let Some(how) = check {
                    let local = digest
                        .lock()
                        .ok()
                        .and_then(|mut d| d.take())
                        .map(Digest::finish)
                        .unwrap_or_default();
                    let algorithm = {
                        let len = Some(written.load(Ordering::Relaxed));
                        verify::compare(&mut client, how, (remote, len), local, shown, "").await?
                    };
                    if let Ok(mut v) = verified.lock() {
                        *v = Some(algorithm);
                    }
                }
                client.quit().await;
                Ok(())
            }
        })
        .await?;
    let verified = verified.lock().ok().and_then(|v| *v);
    Ok(GetDone::File {
        shown,
        size: None,
        verified,
    })
}

/// Where one file goes: the name given, into the directory given, or the remote name here.
/// Its directory must exist (a typo in it is not a directory to create).
fn local_path(request: &GetRequest, name: &[u8]) -> Result<PathBuf> {
    let local = match &request.local {
        None => local_name(name)?,
        Some(l) if l.is_dir() => l.join(local_name(name)?),
        Some(l) => l.clone(),
    };
    if let Some(parent) = local.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            let why = format!("no such directory: {}", parent.display());
            return Err(Error::Local {
                path: local.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, why),
            });
        }
    }
    Ok(local)
}

/// One file through its partial file, over several sessions when asked and the server can.
async fn get_file(
    connector: &Connector,
    request: &GetRequest,
    remote: &[u8],
    name: &[u8],
    events: Arc<dyn Events>,
) -> Result<GetDone> {
    let local = local_path(request, name)?;
    events.partial(&part::part_path(&local));
    let mut client = connector.open().await?;
    // The size: for the progress, the result line, and to check that all of it came.
    let size = if request.ascii {
        None
    } else {
        client.size(remote).await?
    };
    if let Some(size) = size {
        events.set_total(size);
    } else if is_dir(&mut client, remote).await? {
        // No size: perhaps no file at all (SIZE of a directory is refused as no plain file).
        return Err(request.is_a_directory("is"));
    }
    let shown = local.display().to_string();
    let say = |m: &str| events.message(m);
    let check = verify::plan(&client, request.verify, request.ascii, &shown, &say)?;
    let client = match (request.segments, size) {
        (Some(n), Some(size)) if client.features().rest_stream => {
            let plan = segments::Plan {
                size,
                segments: n,
                retries: request.tree.retries,
            };
            let progress = ProgressOf::shared(&events);
            let report =
                segments::download(client, connector, remote, &local, plan, progress).await?;
            let mut verified = None;
            if let Some(how) = check {
                verified =
                    Some(verify_read_back(connector, how, remote, &local, &shown, &say).await?);
            }
            return Ok(GetDone::Segments {
                shown,
                size,
                report,
                verified,
            });
        }
        (Some(_), Some(_)) => {
            events.message("the server offers no REST STREAM: downloading over one session");
            client
        }
        (Some(_), None) => {
            events
                .message("the server does not tell the size (SIZE): downloading over one session");
            client
        }
        (None, _) => client,
    };
    let first_how = if request.tree.resume {
        Resume::Any
    } else {
        Resume::Fresh
    };
    let mut first = Some(client);
    request
        .policy()
        .run(&shown, &say, |again| {
            let session = first.take();
            let (local, events) = (&local, &events);
            async move {
                let mut client = match session {
                    Some(c) => c,
                    None => connector.open().await?,
                };
                let how = if again && first_how == Resume::Fresh {
                    Resume::Partial
                } else {
                    first_how
                };
                // A further try: what the file has was counted by the try that wrote it.
                let all = ProgressOf(events.clone());
                let retrying = Retrying(&all);
                let progress: &dyn Progress = if again { &retrying } else { &all };
                part::download_checked(&mut client, remote, local, size, how, progress, check)
                    .await?;
                client.quit().await;
                Ok(())
            }
        })
        .await?;
    // A success with a check is a verified file: a difference is an error.
    let verified = check.map(|how| how.algorithm());
    Ok(GetDone::File {
        shown,
        size,
        verified,
    })
}

/// A segmented download's check: the ranges came over several sessions, so the finished file
/// is read back and hashed whole; one that differs goes back to `NAME.wharf-part`.
async fn verify_read_back(
    connector: &Connector,
    how: wharf_proto::client::hash::HashCommand,
    remote: &[u8],
    local: &Path,
    shown: &str,
    say: &dyn Fn(&str),
) -> Result<HashAlgorithm> {
    say(&format!(
        "{shown}: reading the file back to verify it (its ranges came over several sessions)"
    ));
    let mut client = connector.open().await?;
    let mut digest = Digest::new(how.algorithm());
    let len = std::fs::metadata(local)
        .map_err(|e| Error::local(e).at(local))?
        .len();
    verify::hash_prefix(local, len, &mut digest).await?;
    let part = part::part_path(local);
    let kept = format!("; the download is kept as {}", part.display());
    let checked = verify::compare(
        &mut client,
        how,
        (remote, Some(len)),
        digest.finish(),
        shown,
        &kept,
    )
    .await;
    if checked.is_err() {
        std::fs::rename(local, &part).map_err(|e| Error::local(e).at(local))?;
    }
    client.quit().await;
    checked
}

/// Whether `remote` is a directory: MLST's type where the server offers it, else a CWD there
/// and back (a server that refuses PWD cannot be asked: no).
pub async fn is_dir(client: &mut Client, remote: &[u8]) -> Result<bool> {
    if client.features().mlst
        && let Ok(Some(entry)) = client.mlst(remote).await
    {
        return Ok(entry.kind == FileKind::Dir);
    }
    match client.is_dir(remote).await {
        Ok(dir) => Ok(dir),
        Err(Error::Refused { command, .. }) if command.starts_with("PWD") => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Options;
    use crate::ops::Quiet;

    /// A connector to a port nothing listens on: the decisions below are made before any
    /// session is asked for, and one that is asked for fails as a network error instead.
    fn nowhere(url: &FtpUrl) -> Connector {
        let options = Options {
            timeout: std::time::Duration::from_secs(2),
            ..Options::default()
        };
        Connector::new(url, None, options)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refused_before_connecting() {
        // (URL, local, -r) → the usage error's text
        let cases = [
            (
                "ftp://127.0.0.1:9/dir/",
                None,
                false,
                "names a directory: use -r",
            ),
            (
                "ftp://127.0.0.1:9/",
                None,
                false,
                "names a directory: use -r",
            ),
            (
                "ftp://127.0.0.1:9/dir",
                Some("-"),
                true,
                "-r cannot write to stdout",
            ),
            (
                "ftp://127.0.0.1:9/*.gz",
                Some("-"),
                false,
                "a pattern cannot be written to stdout",
            ),
        ];
        for (text, local, recursive, want) in cases {
            let url = FtpUrl::parse(text).unwrap();
            let request = GetRequest {
                url: url.clone(),
                shown_url: text.to_string(),
                local: local.map(PathBuf::from),
                recursive,
                ascii: false,
                segments: None,
                tree: TreeOptions::default(),
                verify: Verify::Off,
            };
            let got = get(&nowhere(&url), &request, Arc::new(Quiet)).await;
            match got {
                Err(Error::Usage(m)) => assert!(m.contains(want), "{text}: {m}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn local_file_needs_its_directory() {
        let url = FtpUrl::parse("ftp://h/a.txt").unwrap();
        let mut request = GetRequest {
            url,
            shown_url: String::new(),
            local: Some(PathBuf::from("/nonexistent-wharf-dir/a.txt")),
            recursive: false,
            ascii: false,
            segments: None,
            tree: TreeOptions::default(),
            verify: Verify::Off,
        };
        let e = local_path(&request, b"a.txt").unwrap_err();
        assert!(e.to_string().contains("no such directory"), "{e}");
        request.local = None;
        assert_eq!(
            local_path(&request, b"a.txt").unwrap(),
            PathBuf::from("a.txt")
        );
        assert!(local_path(&request, b"..").is_err());
    }
}
