//! The I/O after login: a resumed download, `--write`'s files, TLS versions and session reuse
//! on connections of their own, the other address family. Each returns facts for the judges.

use std::net::SocketAddr;

use wharf_proto::ReplyCode;

use super::judge_data::OtherFamily;
use super::judge_session::Resume;
use super::judge_tls::Reuse;
use super::judge_write::{NonAscii, Removed, TestNames, Upload, removed};
use super::probe::{Account, handshake_only};
use crate::client::{Client, DataMethod, NoProgress, Options, Store};
use crate::error::Error;
use crate::tls::{TlsSettings, TlsVersion};

/// REST and a RETR that may take one byte more than the rest (the data connection is cut
/// then): the bytes that came.
pub(crate) async fn resume(client: &mut Client, plan: &Resume) -> Result<u64, Error> {
    let mut got = Vec::new();
    client
        .retrieve_range(
            &plan.name,
            plan.offset,
            plan.want() + 1,
            &mut got,
            &NoProgress,
        )
        .await
}

/// Deletes a test file after a failed step.
async fn remove(account: &Account<'_>, client: &mut Client, name: &str) -> String {
    let gone = match account.ready(client).await {
        Err(e) => Removed::NoSession(e),
        Ok(()) => match client.delete(name.as_bytes()).await {
            Ok(()) => Removed::Deleted,
            Err(e) if e.reply_code() == Some(ReplyCode::FILE_UNAVAILABLE) => Removed::NotThere,
            Err(e) => Removed::Failed(e),
        },
    };
    removed(name, &gone)
}

/// Stores `body` as `name` on a ready session.
async fn store(
    account: &Account<'_>,
    client: &mut Client,
    name: &str,
    body: &[u8],
) -> Result<(), Error> {
    account.ready(client).await?;
    let mut input = body;
    client
        .store(name.as_bytes(), Store::Replace, &mut input, &NoProgress)
        .await
        .map(|_| ())
}

/// STOR of `body` and SIZE of what arrived.
pub(crate) async fn upload(
    account: &Account<'_>,
    client: &mut Client,
    name: &str,
    body: &[u8],
) -> Upload {
    if let Err(e) = account.ready(client).await {
        return Upload::NoSession(e);
    }
    if let Err(error) = store(account, client, name, body).await {
        let left = remove(account, client, name).await;
        return Upload::Refused { error, left };
    }
    Upload::Stored {
        size: client.size(name.as_bytes()).await.ok().flatten(),
    }
}

/// RNFR/RNTO on a ready session.
pub(crate) async fn rename(
    account: &Account<'_>,
    client: &mut Client,
    from: &str,
    to: &str,
) -> Result<(), Error> {
    account.ready(client).await?;
    client.rename(from.as_bytes(), to.as_bytes()).await
}

/// DELE on a ready session.
pub(crate) async fn delete(
    account: &Account<'_>,
    client: &mut Client,
    name: &[u8],
) -> Result<(), Error> {
    account.ready(client).await?;
    client.delete(name).await
}

/// A file with a non-ASCII name: stored, listed back, and this run's files deleted.
pub(crate) async fn non_ascii(
    account: &Account<'_>,
    client: &mut Client,
    names: &TestNames,
) -> NonAscii {
    let name = names.non_ascii();
    if let Err(e) = account.ready(client).await {
        return NonAscii::NoSession(e);
    }
    if let Err(error) = store(account, client, &name, b"UTF-8\n").await {
        let left = remove(account, client, &name).await;
        return NonAscii::Refused { error, left };
    }
    let listed = match account.ready(client).await {
        Ok(()) => client.list(b"").await,
        Err(e) => Err(e),
    };
    let listed = listed.map(|entries| names.ours(&entries));
    // Without a listing, the one name sent is what there is to delete.
    let ours = match &listed {
        Ok(ours) => ours.clone(),
        Err(_) => vec![name.into_bytes()],
    };
    let mut left = Vec::new();
    for file in ours {
        if delete(account, client, &file).await.is_err() {
            left.push(file);
        }
    }
    NonAscii::Stored { listed, left }
}

/// One handshake with each TLS version, on connections of their own: the cipher suite or why
/// not.
pub(crate) async fn versions(
    peer: SocketAddr,
    settings: &TlsSettings,
    options: &Options,
) -> Vec<(TlsVersion, Result<String, Error>)> {
    let mut tried = Vec::new();
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let result = match settings.only(version) {
            Ok(only) => {
                let options = Options {
                    tls: Some(only),
                    log: None,
                    ..options.clone()
                };
                handshake_only(peer, &options).await
            }
            Err(e) => Err(e),
        };
        tried.push((version, result));
    }
    tried
}

/// A listing over `method` resuming the TLS session, then one with a new session, on a session
/// of their own.
pub(crate) async fn reuse(peer: SocketAddr, account: &Account<'_>, method: DataMethod) -> Reuse {
    let mut client = match account.reopen(peer).await {
        Ok(c) => c,
        Err(e) => return Reuse::NoSession(e),
    };
    let ours = client.probe_listing(method).await;
    if let Err(e) = ours.result {
        client.close().await;
        return Reuse::Refused(e);
    }
    let fresh = match account.ready(&mut client).await {
        Ok(()) => {
            client.forget_tls_sessions();
            let fresh = client.probe_listing(method).await;
            if client.in_step() {
                client.quit().await;
            }
            Ok(fresh.result)
        }
        Err(e) => Err(e),
    };
    Reuse::Accepted {
        resumed: ours.data_tls_resumed,
        fresh,
    }
}

/// The same session over the other address family of the name: connect, login, and a listing
/// over EPSV (the one passive command of both families).
pub(crate) async fn other_family(addr: SocketAddr, account: &Account<'_>) -> OtherFamily {
    let mut client = match account.reopen(addr).await {
        Ok(c) => c,
        Err(e) => return OtherFamily::NoSession(e),
    };
    let probe = client.probe_listing(DataMethod::Epsv).await;
    if client.in_step() {
        client.quit().await;
    }
    OtherFamily::Listed(probe.result)
}
