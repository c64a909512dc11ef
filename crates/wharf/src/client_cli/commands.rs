//! The client commands over the library's operations: arguments in, result lines and exit
//! code out.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use wharf_client::connector::Connector;
use wharf_client::mirror::{self, Direction, MirrorOptions};
use wharf_client::ops::{self, GetDone, GetRequest, PathOp, PutDone, PutRequest};
use wharf_client::tree::{TreeOptions, plural};
use wharf_client::url::redact;
use wharf_client::{Client, Error, ErrorKind, FtpUrl};

use super::output::{format_size, print_listing, tree_exit, verified_line};
use super::{
    GetArgs, LsArgs, MirrorArgs, MvArgs, PathArgs, PutArgs, RESUME_GET, RESUME_MIRROR, Ui, clean,
    exit_code, note_partial, result_line, setup,
};

pub(super) async fn ls(args: LsArgs) -> Result<ExitCode, Error> {
    let s = setup(&args.url, &args.common, false)?;
    let mut client = s.connector.open().await?;
    let listed = ops::list(&mut client, s.url.path_trimmed(), args.json).await?;
    client.quit().await;
    print_listing(&listed, args.long, args.json);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn get(args: GetArgs) -> Result<ExitCode, Error> {
    let to_stdout = args.local.as_deref() == Some(Path::new("-"));
    let mut s = setup(&args.url, &args.common, !to_stdout)?;
    s.connector.ascii = args.flags.ascii;
    let request = GetRequest {
        url: s.url.clone(),
        shown_url: redact(&args.url),
        local: args.local.clone(),
        recursive: args.flags.recursive,
        ascii: args.flags.ascii,
        segments: args.segments.map(usize::from),
        tree: args.flags.tree_options(),
        verify: args.verify.unwrap_or_default(),
    };
    let ui = Arc::new(Ui::new(s.bar.clone(), RESUME_GET));
    let done = ops::get(&s.connector, &request, ui).await?;
    s.bar.finish();
    match done {
        GetDone::Tree(report) => return Ok(tree_exit(&s, &report)),
        GetDone::File {
            shown,
            size,
            verified,
        } => {
            result_line(&s, &shown, size);
            verified_line(&s, &shown, verified);
        }
        GetDone::Segments {
            shown,
            size,
            report,
            verified,
        } => {
            result_line(&s, &shown, Some(size));
            verified_line(&s, &shown, verified);
            if !s.quiet {
                eprintln!(
                    "{}: {} over {}",
                    clean(&shown),
                    plural(report.segments as u64, "range"),
                    plural(report.sessions as u64, "session")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn put(args: PutArgs) -> Result<ExitCode, Error> {
    let from_stdin = args.local == Path::new("-");
    let mut s = setup(&args.url, &args.common, !from_stdin)?;
    s.connector.ascii = args.flags.ascii;
    let request = PutRequest {
        local: args.local.clone(),
        url: s.url.clone(),
        create_dirs: args.create_dirs,
        recursive: args.flags.recursive,
        tree: TreeOptions {
            follow_links: args.follow_links,
            ..args.flags.tree_options()
        },
        verify: args.verify.unwrap_or_default(),
    };
    let ui = Arc::new(Ui::new(s.bar.clone(), RESUME_GET));
    let done = ops::put(&s.connector, &request, ui).await?;
    s.bar.finish();
    match done {
        PutDone::Tree(report) => Ok(tree_exit(&s, &report)),
        PutDone::File {
            shown,
            len,
            verified,
        } => {
            result_line(&s, &shown, len);
            verified_line(&s, &shown, verified);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// rm, mkdir, rmdir of one or more URLs (one session per server, in order); rm of a pattern
/// deletes each file it matches. Every path is tried; the first failure gives the exit code.
pub(super) async fn paths(args: PathArgs, op: PathOp) -> Result<ExitCode, Error> {
    let mut session: Option<(String, Client)> = None;
    // One set-up (password, netrc, TLS) per server and user, however many paths name it.
    let mut connectors: std::collections::HashMap<String, Connector> = Default::default();
    let mut first_failure: Option<ErrorKind> = None;
    for text in &args.urls {
        let result = async {
            let url = FtpUrl::parse(text)?;
            let path = url.path_trimmed().to_vec();
            if path.is_empty() {
                return Err(Error::Usage(format!("{} names no path", redact(text))));
            }
            let key = format!(
                "{:?}|{}|{}|{:?}|{}",
                url.security,
                url.host,
                url.port,
                url.user,
                url.password.is_some()
            );
            let mut client = match session.take() {
                Some((k, c)) if k == key && c.in_step() => c,
                other => {
                    if let Some((_, c)) = other {
                        c.quit().await;
                    }
                    let connector = match connectors.get(&key) {
                        Some(c) => c.clone(),
                        None => {
                            let c = setup(text, &args.common, false)?.connector;
                            connectors.insert(key.clone(), c.clone());
                            c
                        }
                    };
                    connector.open().await?
                }
            };
            let ui = Ui::new(super::Bar::new(false), RESUME_GET);
            let result = ops::apply(&mut client, op, &path, &ui).await;
            session = Some((key, client));
            result
        }
        .await;
        if let Err(e) = result {
            eprintln!("wharf: {}", clean(&e.to_string()));
            first_failure.get_or_insert(e.kind());
        }
    }
    if let Some((_, c)) = session {
        c.quit().await;
    }
    Ok(match first_failure {
        None => ExitCode::SUCCESS,
        Some(kind) => ExitCode::from(exit_code(kind)),
    })
}

/// `mv`: the new path is checked before the password is asked for or anything is sent.
pub(super) async fn mv(args: MvArgs) -> Result<ExitCode, Error> {
    let url = FtpUrl::parse(&args.url)?;
    let from = url.path_trimmed().to_vec();
    if from.is_empty() {
        return Err(Error::Usage(format!("{} names no path", redact(&args.url))));
    }
    let to = ops::rename_target(&url, &args.new_path)?;
    let s = setup(&args.url, &args.common, false)?;
    let mut client = s.connector.open().await?;
    client.rename(&from, &to).await?;
    client.quit().await;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn mirror(args: MirrorArgs) -> Result<ExitCode, Error> {
    let (url, local, direction) = Direction::of(&args.src, &args.dst)?;
    let s = setup(url, &args.common, !args.dry_run)?;
    let options = MirrorOptions {
        delete: args.delete,
        dry_run: args.dry_run,
        include: args.include.iter().map(|g| g.as_bytes().to_vec()).collect(),
        exclude: args.exclude.iter().map(|g| g.as_bytes().to_vec()).collect(),
        tree: TreeOptions {
            follow_links: args.follow_links,
            verify: args.verify.unwrap_or_default(),
            ..args.pool.tree_options()
        },
        compare: if args.compare == "hash" {
            mirror::Compare::Hash
        } else {
            mirror::Compare::SizeTime
        },
    };
    if direction == Direction::Download {
        note_partial(local.clone(), RESUME_MIRROR);
    }
    let client = s.connector.open().await?;
    let started = Instant::now();
    let report = mirror::mirror(
        client,
        &s.connector,
        direction,
        s.url.path_trimmed(),
        &local,
        &options,
        Arc::new(s.bar.clone()),
    )
    .await?;
    s.bar.finish();
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        for line in &report.plan {
            let _ = writeln!(out, "{}", clean(line));
        }
    }
    let t = &report.transfers;
    for skipped in &t.skipped {
        eprintln!("wharf: warning: skipped {}", clean(skipped));
    }
    for (name, e) in &t.failures {
        eprintln!("wharf: {}: {}", clean(name), clean(&e.to_string()));
    }
    let (verb, files) = if args.dry_run {
        let planned = report.plan.iter();
        let n = planned
            .filter(|l| l.starts_with("get ") || l.starts_with("put "))
            .count();
        ("would transfer", n as u64)
    } else {
        ("transferred", t.files)
    };
    let summary = format!(
        "mirror: {verb} {files} files ({}), {} up to date, {} already complete, {} directories made, {} deleted, {} failed, in {:.1} s",
        format_size(t.bytes),
        report.up_to_date,
        t.already_complete,
        report.dirs_made,
        report.deleted,
        t.failures.len(),
        started.elapsed().as_secs_f64()
    );
    if !s.quiet || !t.failures.is_empty() {
        eprintln!("{summary}");
    }
    if let (Some(algorithm), false) = (t.verified_by, s.quiet) {
        eprintln!(
            "mirror: {} verified ({})",
            plural(t.verified, "file"),
            algorithm.name()
        );
    }
    if let Some(why) = t.unverified_why {
        eprintln!(
            "wharf: warning: {} not verified: {why}",
            plural(t.unverified, "file")
        );
    }
    Ok(match t.failures.first() {
        None => ExitCode::SUCCESS,
        Some((_, e)) => ExitCode::from(exit_code(e.kind())),
    })
}
