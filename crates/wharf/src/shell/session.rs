//! The shell's commands: one session, opened again after a drop, and the remote and local
//! commands run on it.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use wharf_client::ops;
use wharf_client::part::{self, Resume};
use wharf_client::tree::{self, TreeOptions};
use wharf_client::verify::{self, Verify};
use wharf_client::{Client, Error, FileKind};
use wharf_proto::glob;

use super::{HELP, Shell};
use crate::client_cli;

impl Shell {
    pub(super) async fn connect(&mut self) -> Result<(), Error> {
        let mut client = self.setup.connector.open().await?;
        if !self.cwd.is_empty() {
            if let Err(e) = client.cwd(&self.cwd).await {
                if !client.in_step() {
                    return Err(e);
                }
                // Gone while we were away: the login directory it is.
                eprintln!(
                    "wharf: cannot go back to {} ({}): in the login directory",
                    client_cli::clean(&String::from_utf8_lossy(&self.cwd)),
                    client_cli::clean(&e.to_string())
                );
            }
        }
        self.cwd = client.pwd().await.unwrap_or_default();
        self.client = Some(client);
        Ok(())
    }

    /// The session, opened again (in the same directory) when the last one broke.
    pub(super) async fn session(&mut self) -> Result<&mut Client, Error> {
        if self.client.as_ref().is_none_or(|c| !c.in_step()) {
            if self.client.take().is_some() {
                eprintln!("wharf: the connection was lost; reconnecting");
            }
            self.connect().await?;
        }
        self.client
            .as_mut()
            .ok_or_else(|| Error::Protocol("no session".into()))
    }

    /// Lists the current directory again, for completion.
    pub(super) async fn refresh(&mut self) -> Result<(), Error> {
        let entries = self.session().await?.list(b"").await?;
        let names = entries
            .into_iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    e.kind == FileKind::Dir,
                )
            })
            .collect();
        if let Ok(mut n) = self.names.0.lock() {
            *n = names;
        }
        Ok(())
    }

    /// Runs a command; when the connection turns out to have dropped before the server did
    /// anything for it (no reply but 421 came), reconnects and runs it once more. One that
    /// was partly done is not run again: the next command reconnects.
    pub(super) async fn run_command(
        &mut self,
        command: &str,
        args: &[String],
    ) -> Result<(), Error> {
        let before = self
            .client
            .as_ref()
            .filter(|c| c.in_step())
            .map(Client::replies);
        match self.command(command, args).await {
            Err(e) if lost(&e) && self.client.as_ref().is_none_or(|c| !c.in_step()) => {
                let untouched =
                    before.is_some() && self.client.as_ref().map(Client::replies) == before;
                self.client = None;
                if !untouched {
                    return Err(e);
                }
                eprintln!(
                    "wharf: the connection was lost ({}); reconnecting",
                    client_cli::clean(&e.to_string())
                );
                self.connect().await?;
                self.command(command, args).await
            }
            other => other,
        }
    }

    async fn command(&mut self, command: &str, args: &[String]) -> Result<(), Error> {
        let w = Words::new(args);
        match command {
            "get" | "mget" | "put" | "mput" => self.transfer(command, &w).await,
            "rm" | "delete" | "mkdir" | "rmdir" | "mv" | "rename" => self.change(command, &w).await,
            "pwd" | "cd" | "ls" | "dir" => self.remote(command, &w).await,
            _ => self.local(command, &w),
        }
    }

    /// Transfers: get, mget, put, mput (and their -r, -c).
    async fn transfer(&mut self, command: &str, w: &Words<'_>) -> Result<(), Error> {
        let words = w.words.clone();
        let has = |f: &str| w.has(f);
        let arg = |i: usize| w.arg(i);
        match command {
            "get" => {
                let remote = arg(0).ok_or_else(|| usage("get REMOTE [LOCAL]"))?;
                let local = match words.get(1) {
                    Some(l) => PathBuf::from(l),
                    None => PathBuf::from(std::ffi::OsStr::from_bytes(last_component(&remote))),
                };
                let local = if local.is_dir() {
                    local.join(std::ffi::OsStr::from_bytes(last_component(&remote)))
                } else {
                    local
                };
                if has("-r") {
                    self.get_tree(&remote, &local, has("-c")).await?;
                } else {
                    let how = if has("-c") {
                        Resume::Any
                    } else {
                        Resume::Fresh
                    };
                    self.get_one(&remote, &local, how).await?;
                }
            }
            "mget" => {
                if words.is_empty() {
                    return Err(usage("mget PATTERN..."));
                }
                for pattern in &words {
                    let pattern = pattern.as_bytes();
                    let names: Vec<Vec<u8>> =
                        match ops::expand(self.session().await?, pattern, true).await? {
                            Some(matched) => matched.into_iter().map(|(p, _)| p).collect(),
                            None => vec![pattern.to_vec()],
                        };
                    for remote in names {
                        let local = ops::local_name(last_component(&remote))?;
                        let how = if has("-c") {
                            Resume::Any
                        } else {
                            Resume::Fresh
                        };
                        if let Err(e) = self.get_one(&remote, &local, how).await {
                            if lost(&e) {
                                return Err(e);
                            }
                            eprintln!("wharf: {}", client_cli::clean(&e.to_string()));
                        }
                    }
                }
            }
            "put" => {
                let local = words
                    .first()
                    .map(PathBuf::from)
                    .ok_or_else(|| usage("put LOCAL [REMOTE]"))?;
                let remote = match arg(1) {
                    Some(r) => r,
                    None => local
                        .file_name()
                        .map(|n| n.as_bytes().to_vec())
                        .ok_or_else(|| usage("put LOCAL [REMOTE]"))?,
                };
                if has("-r") {
                    self.put_tree(&local, &remote).await?;
                } else {
                    self.put_one(&local, &remote, has("-c")).await?;
                }
                self.refresh().await?;
            }
            "mput" => {
                if words.is_empty() {
                    return Err(usage("mput PATTERN..."));
                }
                for pattern in &words {
                    for local in local_matches(pattern)? {
                        let Some(name) = local.file_name().map(|n| n.as_bytes().to_vec()) else {
                            continue;
                        };
                        if let Err(e) = self.put_one(&local, &name, has("-c")).await {
                            if lost(&e) {
                                return Err(e);
                            }
                            eprintln!("wharf: {}", client_cli::clean(&e.to_string()));
                        }
                    }
                }
                self.refresh().await?;
            }
            _ => unreachable_command(command)?,
        }
        Ok(())
    }

    /// Changes on the server: rm, mkdir, rmdir, mv; the names for completion are read again after.
    async fn change(&mut self, command: &str, w: &Words<'_>) -> Result<(), Error> {
        let words = w.words.clone();
        let has = |f: &str| w.has(f);
        let arg = |i: usize| w.arg(i);
        match command {
            "rm" | "delete" => {
                if words.is_empty() {
                    return Err(usage("rm PATH|PATTERN..."));
                }
                for word in &words {
                    let path = word.as_bytes();
                    let targets: Vec<Vec<u8>> =
                        match ops::expand(self.session().await?, path, false).await? {
                            Some(matched) => matched.into_iter().map(|(p, _)| p).collect(),
                            None => vec![path.to_vec()],
                        };
                    for t in targets {
                        self.session().await?.delete(&t).await?;
                    }
                }
                self.refresh().await?;
            }
            "mkdir" => {
                if words.is_empty() {
                    return Err(usage("mkdir [-p] PATH..."));
                }
                for word in &words {
                    let session = self.session().await?;
                    if has("-p") {
                        tree::mkdir_p(session, word.as_bytes()).await?;
                    } else {
                        session.mkdir(word.as_bytes()).await?;
                    }
                }
                self.refresh().await?;
            }
            "rmdir" => {
                for word in &words {
                    self.session().await?.rmdir(word.as_bytes()).await?;
                }
                self.refresh().await?;
            }
            "mv" | "rename" => {
                let (Some(from), Some(to)) = (arg(0), arg(1)) else {
                    return Err(usage("mv FROM TO"));
                };
                self.session().await?.rename(&from, &to).await?;
                self.refresh().await?;
            }
            _ => unreachable_command(command)?,
        }
        Ok(())
    }

    /// Where the session is, and what is there.
    async fn remote(&mut self, command: &str, w: &Words<'_>) -> Result<(), Error> {
        let has = |f: &str| w.has(f);
        let arg = |i: usize| w.arg(i);
        match command {
            "pwd" => {
                let dir = self.session().await?.pwd().await?;
                self.cwd = dir;
                println!("{}", client_cli::clean(&String::from_utf8_lossy(&self.cwd)));
            }
            "cd" => {
                let to = arg(0).unwrap_or_else(|| b"/".to_vec());
                let session = self.session().await?;
                session.cwd(&to).await?;
                self.cwd = session.pwd().await?;
                self.refresh().await?;
            }
            "ls" | "dir" => {
                let path = arg(0).unwrap_or_default();
                let listed = ops::list(self.session().await?, &path, false).await?;
                let mut out = std::io::stdout().lock();
                for l in &listed {
                    let line = if has("-l") {
                        client_cli::long_line(&l.entry)
                    } else {
                        let mut line = l.entry.name.clone();
                        line.push(b'\n');
                        line
                    };
                    let text = client_cli::clean(String::from_utf8_lossy(&line).trim_end());
                    let _ = writeln!(out, "{text}");
                }
            }
            _ => unreachable_command(command)?,
        }
        Ok(())
    }

    /// The shell's own commands and those on the local side.
    fn local(&mut self, command: &str, w: &Words<'_>) -> Result<(), Error> {
        let words = w.words.clone();
        match command {
            "help" | "?" => println!("{HELP}"),
            "log" => {
                let on = match words.first().map(|w| w.as_str()) {
                    Some("on") => true,
                    Some("off") => false,
                    _ => !self.log_on.load(Ordering::Relaxed),
                };
                self.log_on.store(on, Ordering::Relaxed);
                println!("connection log {}", if on { "on" } else { "off" });
            }
            "verify" => {
                self.verify = match words.first().map(|w| w.as_str()) {
                    Some("on") => Verify::On,
                    Some("off") => Verify::Off,
                    Some("required") => Verify::Required,
                    None => self.verify,
                    Some(_) => return Err(usage("verify [on|off|required]")),
                };
                let now = match self.verify {
                    Verify::Off => "off",
                    Verify::On => "on",
                    Verify::Required => "required",
                };
                println!("verify {now}");
            }
            "lcd" => {
                let to = words
                    .first()
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("/"));
                std::env::set_current_dir(&to).map_err(|e| Error::local(e).at(&to))?;
                println!("local directory: {}", cwd_display());
            }
            "lpwd" => println!("{}", cwd_display()),
            "lls" => {
                let dir = words
                    .first()
                    .map_or_else(|| PathBuf::from("."), PathBuf::from);
                let mut names: Vec<(String, bool)> = std::fs::read_dir(&dir)
                    .map_err(|e| Error::local(e).at(&dir))?
                    .filter_map(Result::ok)
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            e.path().is_dir(),
                        )
                    })
                    .collect();
                names.sort();
                for (n, d) in names {
                    println!("{}{}", client_cli::clean(&n), if d { "/" } else { "" });
                }
            }
            other => {
                return Err(Error::Usage(format!(
                    "unknown command {other:?}: `help` lists them"
                )));
            }
        }
        Ok(())
    }

    async fn get_one(&mut self, remote: &[u8], local: &Path, how: Resume) -> Result<(), Error> {
        let bar = self.setup.bar.clone();
        bar.reset();
        let wanted = self.verify;
        let shown = local.display().to_string();
        let session = self.session().await?;
        let size = session.size(remote).await?;
        if let Some(size) = size {
            wharf_client::Progress::set_total(&bar, size);
        }
        let say = |m: &str| eprintln!("wharf: {}", client_cli::clean(m));
        let check = verify::plan(session, wanted, session.is_ascii(), &shown, &say)?;
        let (_, verified) =
            part::download_checked(session, remote, local, size, how, &bar, check).await?;
        bar.finish();
        client_cli::result_line(&self.setup, &shown, size);
        client_cli::verified_line(&self.setup, &shown, verified);
        Ok(())
    }

    async fn put_one(&mut self, local: &Path, remote: &[u8], resume: bool) -> Result<(), Error> {
        let bar = self.setup.bar.clone();
        bar.reset();
        let len = std::fs::metadata(local)
            .map_err(|e| Error::local(e).at(local))?
            .len();
        wharf_client::Progress::set_total(&bar, len);
        let wanted = self.verify;
        let shown = local.display().to_string();
        let session = self.session().await?;
        let say = |m: &str| eprintln!("wharf: {}", client_cli::clean(m));
        let check = verify::plan(session, wanted, session.is_ascii(), &shown, &say)?;
        let (_, verified) =
            part::upload_checked(session, local, remote, resume, &bar, check).await?;
        bar.finish();
        client_cli::result_line(&self.setup, &shown, Some(len));
        client_cli::verified_line(&self.setup, &shown, verified);
        Ok(())
    }

    /// A remote path made absolute against the current directory (a tree copy runs on new
    /// sessions, which start in the login directory).
    fn absolute(&self, path: &[u8]) -> Vec<u8> {
        if path.starts_with(b"/") {
            path.to_vec()
        } else {
            tree::join_remote(&self.cwd, path)
        }
    }

    async fn get_tree(&mut self, remote: &[u8], local: &Path, resume: bool) -> Result<(), Error> {
        let bar = self.setup.bar.clone();
        bar.reset();
        let first = self.setup.connector.open().await?;
        let options = TreeOptions {
            resume,
            ..TreeOptions::default()
        };
        let report = tree::download_tree(
            first,
            &self.setup.connector,
            &self.absolute(remote),
            local,
            options,
            Arc::new(bar.clone()),
        )
        .await?;
        bar.finish();
        client_cli::print_tree_report(&self.setup, &report);
        Ok(())
    }

    async fn put_tree(&mut self, local: &Path, remote: &[u8]) -> Result<(), Error> {
        let bar = self.setup.bar.clone();
        bar.reset();
        let first = self.setup.connector.open().await?;
        let report = tree::upload_tree(
            first,
            &self.setup.connector,
            local,
            &self.absolute(remote),
            TreeOptions::default(),
            Arc::new(bar.clone()),
        )
        .await?;
        bar.finish();
        client_cli::print_tree_report(&self.setup, &report);
        Ok(())
    }
}

/// A command's flags (`-r`) and other words.
struct Words<'a> {
    flags: Vec<&'a String>,
    words: Vec<&'a String>,
}

impl<'a> Words<'a> {
    fn new(args: &'a [String]) -> Words<'a> {
        let (flags, words) = args.iter().partition(|a| a.starts_with('-') && a.len() > 1);
        Words { flags, words }
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|a| a.as_str() == flag)
    }

    fn arg(&self, i: usize) -> Option<Vec<u8>> {
        self.words.get(i).map(|w| w.as_bytes().to_vec())
    }
}

/// A command routed to a group that does not have it: a slip in the routing, said as such
/// rather than a panic.
fn unreachable_command(command: &str) -> Result<(), Error> {
    Err(Error::Usage(format!(
        "unknown command {command:?}: `help` lists them"
    )))
}

/// The connection is gone (the server closed it, a reset, 421): worth a reconnect.
fn lost(e: &Error) -> bool {
    matches!(e, Error::Closed | Error::Network(_))
        || e.reply_code()
            .is_some_and(wharf_proto::ReplyCode::closes_session)
}

fn usage(text: &str) -> Error {
    Error::Usage(format!("usage: {text}"))
}

fn last_component(path: &[u8]) -> &[u8] {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    trimmed.rsplit(|&b| b == b'/').next().unwrap_or(trimmed)
}

fn cwd_display() -> String {
    std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string())
}

/// Local files matching a pattern in its last component (or the path itself).
fn local_matches(pattern: &str) -> Result<Vec<PathBuf>, Error> {
    let path = Path::new(pattern);
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    if !glob::is_pattern(name) {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::local(e).at(dir))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file() && glob::matches(name, e.file_name().as_bytes()))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_components() {
        assert_eq!(last_component(b"a/b/"), b"b");
        assert_eq!(last_component(b"a"), b"a");
    }
}
