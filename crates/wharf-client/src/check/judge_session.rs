//! Judging what a client does right after login: PWD, TYPE I, the listing parsed, a resumed
//! download, and the names (UTF-8). Pure: facts in, a step out.

use std::time::Duration;

use wharf_proto::{FileKind, Reply};

use super::judge_banner::shown;
use super::report::{Step, Verdict};
use super::software::Software;
use crate::Entry;
use crate::error::Error;

pub(crate) fn pwd(dir: &Result<Vec<u8>, Error>, elapsed: Duration) -> Step {
    match dir {
        Ok(dir) => Step::new(
            "pwd",
            Verdict::Ok,
            format!("the login directory is {}", String::from_utf8_lossy(dir)),
            elapsed,
        ),
        Err(e) => Step::new("pwd", Verdict::Warn, e.to_string(), elapsed).because(
            "the server does not say where the session is (PWD): clients that build paths from it go wrong",
            "check the server's log",
        ),
    }
}

pub(crate) fn binary(reply: &Result<Reply, Error>, elapsed: Duration) -> Step {
    match reply {
        Ok(r) => {
            let step = Step::new(
                "type",
                Verdict::Ok,
                format!("{} {}", r.code, r.text()),
                elapsed,
            );
            if r.code.is_completion() {
                return step;
            }
            Step {
                verdict: Verdict::Warn,
                ..step
            }
            .because(
                "the server refuses binary mode (TYPE I): files may arrive altered",
                "check the server's transfer settings",
            )
        }
        Err(e) => Step::new("type", Verdict::Warn, e.to_string(), elapsed),
    }
}

/// The listing of the login directory, parsed: its first entries named.
pub(crate) fn list(entries: &Result<Vec<Entry>, Error>, elapsed: Duration) -> Step {
    let entries = match entries {
        Ok(entries) => entries,
        Err(e) => {
            return Step::new("list", Verdict::Warn, e.to_string(), elapsed).because(
                "the listing came, but could not be read as MLSD or LIST",
                "check the server's listing format settings",
            );
        }
    };
    let shown: Vec<String> = entries
        .iter()
        .take(5)
        .map(|e| {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            match (e.kind, e.size) {
                (FileKind::Dir, _) => format!("{name}/"),
                (_, Some(n)) => format!("{name} ({n} bytes)"),
                _ => name,
            }
        })
        .collect();
    let evidence = match entries.len() {
        0 => "an empty directory".to_string(),
        n if n > 5 => format!("{n} entries: {}, …", shown.join(", ")),
        n => format!("{n} entries: {}", shown.join(", ")),
    };
    Step::new("list", Verdict::Ok, evidence, elapsed)
}

/// Bytes the resume step reads of a larger file: its last few, never the whole file (a large
/// file at a capped rate took a minute, and was then blamed on the server).
const RESUME_PEEK: u64 = 4096;

/// A resumed download to try: a listed file, where to restart it, and what should come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resume {
    pub name: Vec<u8>,
    pub size: u64,
    /// REST to at most [`RESUME_PEEK`] bytes before the end (byte 1 of a small file).
    pub offset: u64,
}

impl Resume {
    /// The first listed file of 2 bytes or more: `None` when there is none.
    pub(crate) fn plan(entries: &[Entry]) -> Option<Resume> {
        let file = entries
            .iter()
            .find(|e| e.kind == FileKind::File && e.size.is_some_and(|n| n >= 2))?;
        let size = file.size.unwrap_or(0);
        Some(Resume {
            name: file.name.clone(),
            size,
            offset: size.saturating_sub(RESUME_PEEK).max(1),
        })
    }

    /// The bytes after the offset: a server that honours REST sends exactly these.
    pub(crate) fn want(&self) -> u64 {
        self.size.saturating_sub(self.offset)
    }

    pub(crate) fn shown_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

pub(crate) fn no_resume(elapsed: Duration) -> Step {
    let evidence = "no file of 2 bytes or more in the login directory to download";
    Step::new("resume", Verdict::Skipped, evidence, elapsed)
}

/// REST and a RETR that may take one byte more than the rest: one that ignores REST starts
/// from the beginning, and the extra byte shows it whatever the file holds.
pub(crate) fn resume(plan: &Resume, got: &Result<u64, Error>, elapsed: Duration) -> Step {
    let (name, size, offset, want) = (plan.shown_name(), plan.size, plan.offset, plan.want());
    match got {
        Ok(n) if *n == want => {
            let shown = if offset == 1 {
                format!("REST 1 + RETR {name}: {n} of {size} bytes")
            } else {
                format!("REST {offset} + RETR {name}: the last {n} of {size} bytes")
            };
            Step::new("resume", Verdict::Ok, format!("{shown} (resumed downloads work)"), elapsed)
        }
        Ok(n) => Step::new(
            "resume",
            Verdict::Warn,
            format!("REST {offset} + RETR {name}: {n} bytes, expected {want}"),
            elapsed,
        )
        .because(
            "the server does not honour REST: a resumed download restarts, and a client that trusts REST writes a corrupt file",
            "enable restart (REST STREAM) in the server",
        ),
        Err(e) => Step::new("resume", Verdict::Warn, e.to_string(), elapsed).because(
            "resuming a download (REST) fails: broken downloads must start over",
            "enable restart (REST STREAM) in the server",
        ),
    }
}

/// What the names step saw: FEAT's UTF8, the answer to `OPTS UTF8 ON`, the listed names.
#[derive(Debug)]
pub(crate) struct Names<'a> {
    pub announced: bool,
    /// The answer to `OPTS UTF8 ON`.
    pub utf8_on: Result<Reply, Error>,
    pub entries: &'a [Entry],
    pub elapsed: Duration,
}

/// UTF-8 names: without `UTF8` clients guess the encoding; a listed name that is not UTF-8
/// shows garbled in every modern client.
pub(crate) fn utf8(facts: &Names<'_>, software: Software) -> Step {
    let opts = match &facts.utf8_on {
        Ok(r) => format!("{} {}", r.code, r.text()),
        Err(e) => e.to_string(),
    };
    let mut not_utf8 = facts
        .entries
        .iter()
        .filter(|e| std::str::from_utf8(&e.name).is_err());
    let non_ascii = facts
        .entries
        .iter()
        .filter(|e| !e.name.is_ascii() && std::str::from_utf8(&e.name).is_ok())
        .count();
    let evidence = format!(
        "FEAT {} UTF8; OPTS UTF8 ON: {opts}; listed names: {} non-ASCII UTF-8, {} not UTF-8",
        if facts.announced {
            "announces"
        } else {
            "does not announce"
        },
        non_ascii,
        not_utf8.clone().count()
    );
    let step = |verdict, evidence| Step::new("utf8", verdict, evidence, facts.elapsed);
    if let Some(first) = not_utf8.next() {
        step(
            Verdict::Warn,
            format!("{evidence} (first: \"{}\")", shown(&first.name)),
        )
        .because(
            "names on the server are not UTF-8 (a legacy encoding such as Latin-1): clients show them garbled and may fail to open them",
            "rename the files to UTF-8 on the server (convmv -f latin1 -t utf8)",
        )
    } else if !facts.announced && non_ascii > 0 {
        step(Verdict::Warn, evidence).because(
            "the server lists non-ASCII names but does not announce UTF8: some clients decode them in a local code page and show them garbled",
            format!("announce UTF-8 names: {}", software.utf8_setting()),
        )
    } else {
        step(Verdict::Ok, evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_proto::ReplyCode;

    const MS: Duration = Duration::from_millis(7);

    fn entry(name: &[u8], kind: FileKind, size: Option<u64>) -> Entry {
        Entry {
            name: name.to_vec(),
            kind,
            size,
            mtime: None,
            link_target: None,
        }
    }

    #[test]
    fn pwd_and_type() {
        let step = pwd(&Ok(b"/home/u".to_vec()), MS);
        assert_eq!(
            (step.verdict, step.evidence.as_str()),
            (Verdict::Ok, "the login directory is /home/u")
        );
        assert_eq!(pwd(&Err(Error::Closed), MS).verdict, Verdict::Warn);
        let table = [
            (Ok(Reply::new(ReplyCode::OK, "Binary")), Verdict::Ok, false),
            (
                Ok(Reply::new(ReplyCode::PARAMETER_NOT_IMPLEMENTED, "no")),
                Verdict::Warn,
                true,
            ),
            (Err(Error::Closed), Verdict::Warn, false),
        ];
        for (reply, verdict, caused) in table {
            let step = binary(&reply, MS);
            assert_eq!((step.verdict, step.cause.is_some()), (verdict, caused));
        }
    }

    #[test]
    fn listings() {
        let dir = entry(b"pub", FileKind::Dir, None);
        let file = entry(b"a.txt", FileKind::File, Some(3));
        let six: Vec<Entry> = (0..6).map(|_| file.clone()).collect();
        let table = [
            (vec![], "an empty directory"),
            (
                vec![dir, file.clone(), entry(b"x", FileKind::File, None)],
                "3 entries: pub/, a.txt (3 bytes), x",
            ),
            (
                six,
                "6 entries: a.txt (3 bytes), a.txt (3 bytes), a.txt (3 bytes), a.txt (3 bytes), a.txt (3 bytes), …",
            ),
        ];
        for (entries, evidence) in table {
            let step = list(&Ok(entries), MS);
            assert_eq!(
                (step.verdict, step.evidence.as_str()),
                (Verdict::Ok, evidence)
            );
        }
        let step = list(&Err(Error::Protocol("bad".into())), MS);
        assert_eq!(step.verdict, Verdict::Warn);
    }

    #[test]
    fn resumes() {
        let small = [
            entry(b"d", FileKind::Dir, Some(9)),
            entry(b"one", FileKind::File, Some(1)),
            entry(b"s", FileKind::File, Some(10)),
        ];
        let plan = Resume::plan(&small).unwrap();
        assert_eq!(
            (plan.name.as_slice(), plan.offset, plan.want()),
            (&b"s"[..], 1, 9)
        );
        let big = Resume::plan(&[entry(b"b", FileKind::File, Some(10_000))]).unwrap();
        assert_eq!((big.offset, big.want()), (5904, 4096));
        assert!(Resume::plan(&small[..2]).is_none());
        assert_eq!(no_resume(MS).verdict, Verdict::Skipped);
        let table = [
            (
                &plan,
                Ok(9),
                Verdict::Ok,
                "REST 1 + RETR s: 9 of 10 bytes (resumed downloads work)",
            ),
            (
                &big,
                Ok(4096),
                Verdict::Ok,
                "REST 5904 + RETR b: the last 4096 of 10000 bytes (resumed downloads work)",
            ),
            (
                &plan,
                Ok(10),
                Verdict::Warn,
                "REST 1 + RETR s: 10 bytes, expected 9",
            ),
            (
                &plan,
                Err(Error::Closed),
                Verdict::Warn,
                "the server closed the connection",
            ),
        ];
        for (plan, got, verdict, evidence) in table {
            let step = resume(plan, &got, MS);
            assert_eq!((step.verdict, step.evidence.as_str()), (verdict, evidence));
        }
    }

    #[test]
    fn utf8_names() {
        let ascii = [entry(b"a", FileKind::File, None)];
        let unicode = [entry("é".as_bytes(), FileKind::File, None)];
        let latin1 = [entry(b"\xe9t\xe9", FileKind::File, None)];
        let opts = || Ok(Reply::new(ReplyCode::OK, "UTF8 on"));
        let table: [(bool, &[Entry], Verdict, Option<&str>); 5] = [
            (true, &ascii, Verdict::Ok, None),
            (true, &unicode, Verdict::Ok, None),
            (false, &ascii, Verdict::Ok, None),
            (
                false,
                &unicode,
                Verdict::Warn,
                Some("the server lists non-ASCII names but does not announce UTF8"),
            ),
            (
                true,
                &latin1,
                Verdict::Warn,
                Some("names on the server are not UTF-8"),
            ),
        ];
        for (announced, entries, verdict, cause) in table {
            let facts = Names {
                announced,
                utf8_on: opts(),
                entries,
                elapsed: MS,
            };
            let step = utf8(&facts, Software::Vsftpd);
            assert_eq!(step.verdict, verdict);
            assert_eq!(
                step.cause
                    .as_deref()
                    .map(|c| &c[..cause.map_or(0, str::len)]),
                cause
            );
        }
        let facts = Names {
            announced: true,
            utf8_on: opts(),
            entries: &latin1,
            elapsed: MS,
        };
        assert_eq!(
            utf8(&facts, Software::Vsftpd).evidence,
            "FEAT announces UTF8; OPTS UTF8 ON: 200 UTF8 on; listed names: 0 non-ASCII UTF-8, 1 not UTF-8 (first: \"\\xe9t\\xe9\")"
        );
    }
}
