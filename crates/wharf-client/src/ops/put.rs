//! `put`: stdin into one file, a tree (`-r`), or one file, resumed where the server's copy
//! stops (`-c`, or after a try that got as far as the server's 150).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::client::{Progress, Store};
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::ops::{Events, ProgressOf};
use crate::part::{self, Retrying};
use crate::retry::RetryPolicy;
use crate::tree::{self, TreeOptions, TreeReport};
use crate::url::FtpUrl;
use crate::verify::{self, Hashing, Verify};

/// What to upload, and how.
#[derive(Debug, Clone)]
pub struct PutRequest {
    /// A file, a directory with `recursive`, or `-` for stdin.
    pub local: PathBuf,
    pub url: FtpUrl,
    /// MKD each missing directory of the remote path first.
    pub create_dirs: bool,
    /// Copy a directory tree.
    pub recursive: bool,
    /// Sessions, resume (`-c`), retries (`--retry`) and links followed (`--follow-links`).
    pub tree: TreeOptions,
    /// Compare each file with the server's hash once stored (`--verify`).
    pub verify: Verify,
}

/// What an upload did, for the caller's result lines.
#[derive(Debug)]
pub enum PutDone {
    /// One file, shown as `shown`; its length when it came from a file; the algorithm that
    /// verified it (`--verify`).
    File {
        shown: String,
        len: Option<u64>,
        verified: Option<wharf_proto::HashAlgorithm>,
    },
    /// A tree: each file's failure is in the report.
    Tree(TreeReport),
}

/// Uploads what `request` names over sessions from `connector`.
pub async fn put(
    connector: &Connector,
    request: &PutRequest,
    events: Arc<dyn Events>,
) -> Result<PutDone> {
    if request.local == Path::new("-") {
        return put_stdin(connector, request, events).await;
    }
    let meta = std::fs::metadata(&request.local).map_err(|e| Error::local(e).at(&request.local))?;
    if request.recursive {
        if !meta.is_dir() {
            return Err(Error::Usage(format!(
                "{}: -r needs a directory",
                request.local.display()
            )));
        }
        let mut client = connector.open().await?;
        let remote = request.url.path_trimmed();
        if request.create_dirs {
            tree::mkdir_p(&mut client, tree::remote_parent(remote)).await?;
        }
        let progress = ProgressOf::shared(&events);
        let report = tree::upload_tree(
            client,
            connector,
            &request.local,
            remote,
            TreeOptions {
                verify: request.verify,
                ..request.tree
            },
            progress,
        )
        .await?;
        return Ok(PutDone::Tree(report));
    }
    if meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is a directory: use -r to copy it",
            request.local.display()
        )));
    }
    put_file(connector, request, meta.len(), events).await
}

/// `put -`: stdin into the one file the URL names.
async fn put_stdin(
    connector: &Connector,
    request: &PutRequest,
    events: Arc<dyn Events>,
) -> Result<PutDone> {
    let url = &request.url;
    if url.trailing_slash || url.path_trimmed().is_empty() || request.recursive {
        return Err(Error::Usage(
            "put - reads stdin into one file: the URL must name that file".into(),
        ));
    }
    let remote = url.path_trimmed();
    let mut client = connector.open().await?;
    if request.create_dirs {
        tree::mkdir_p(&mut client, tree::remote_parent(remote)).await?;
    }
    let shown = String::from_utf8_lossy(remote).into_owned();
    let say = |m: &str| events.message(m);
    let check = verify::plan(&client, request.verify, client.is_ascii(), &shown, &say)?;
    let digest = check.map(|how| wharf_net::digest::Digest::new(how.algorithm()));
    let mut stdin = Hashing::new(tokio::io::stdin(), digest);
    let progress = ProgressOf(events.clone());
    let n = client
        .store(remote, Store::Replace, &mut stdin, &progress)
        .await?;
    let mut verified = None;
    if let (Some(how), Some(digest)) = (check, stdin.digest) {
        let local = digest.finish();
        verified =
            Some(verify::compare(&mut client, how, (remote, Some(n)), local, &shown, "").await?);
    }
    client.quit().await;
    Ok(PutDone::File {
        shown,
        len: None,
        verified,
    })
}

/// One file of `len` bytes, under the URL's name or, for a URL ending in `/`, its own name in
/// that directory.
async fn put_file(
    connector: &Connector,
    request: &PutRequest,
    len: u64,
    events: Arc<dyn Events>,
) -> Result<PutDone> {
    let url = &request.url;
    let remote = if url.trailing_slash {
        let name = request
            .local
            .file_name()
            .ok_or_else(|| Error::Usage("the local path names no file".into()))?;
        tree::join_remote(url.path_trimmed(), name.as_bytes())
    } else {
        url.path_trimmed().to_vec()
    };
    let mut client = connector.open().await?;
    if request.create_dirs {
        tree::mkdir_p(&mut client, tree::remote_parent(&remote)).await?;
    }
    events.set_total(len);
    let shown = request.local.display().to_string();
    let say = |m: &str| events.message(m);
    let check = verify::plan(&client, request.verify, client.is_ascii(), &shown, &say)?;
    let mut first = Some(client);
    // Whether a broken try got as far as the server's 150: only then does the server's file
    // hold this run's bytes, to be resumed; else it is replaced.
    let started = AtomicBool::new(false);
    RetryPolicy::new(request.tree.retries)
        .run(&shown, &say, |again| {
            let session = first.take();
            let (remote, local, started, events) = (&remote, &request.local, &started, &events);
            let resume = request.tree.resume || started.load(Ordering::Relaxed);
            async move {
                let mut client = match session {
                    Some(c) => c,
                    None => connector.open().await?,
                };
                let all = ProgressOf(events.clone());
                let retrying = Retrying(&all);
                let progress: &dyn Progress = if again { &retrying } else { &all };
                let result =
                    part::upload_checked(&mut client, local, remote, resume, progress, check).await;
                if client.data_started() {
                    started.store(true, Ordering::Relaxed);
                }
                result?;
                client.quit().await;
                Ok(())
            }
        })
        .await?;
    // A success with a check is a verified file: a difference is an error.
    Ok(PutDone::File {
        shown,
        len: Some(len),
        verified: check.map(|how| how.algorithm()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Options;
    use crate::ops::Quiet;

    #[tokio::test(flavor = "current_thread")]
    async fn refused_before_connecting() {
        let dir = std::env::temp_dir();
        let file = dir.join(format!("wharf-put-test-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        // (local, URL, -r) → the usage error's text
        let cases = [
            (
                "-",
                "ftp://127.0.0.1:9/dir/",
                false,
                "the URL must name that file",
            ),
            (
                "-",
                "ftp://127.0.0.1:9/f",
                true,
                "the URL must name that file",
            ),
            (
                file.to_str().unwrap(),
                "ftp://127.0.0.1:9/f",
                true,
                "-r needs a directory",
            ),
            (
                dir.to_str().unwrap(),
                "ftp://127.0.0.1:9/f",
                false,
                "is a directory: use -r",
            ),
        ];
        for (local, text, recursive, want) in cases {
            let url = FtpUrl::parse(text).unwrap();
            let connector = Connector::new(&url, None, Options::default());
            let request = PutRequest {
                local: PathBuf::from(local),
                url,
                create_dirs: false,
                recursive,
                tree: TreeOptions::default(),
                verify: Verify::Off,
            };
            match put(&connector, &request, Arc::new(Quiet)).await {
                Err(Error::Usage(m)) => assert!(m.contains(want), "{local} {text}: {m}"),
                other => panic!("{local} {text}: {other:?}"),
            }
        }
        let _ = std::fs::remove_file(&file);
    }
}
