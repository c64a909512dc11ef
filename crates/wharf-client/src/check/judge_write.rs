//! Judging `--write`: an upload compared by size, a rename, a delete, and a non-ASCII name
//! listed back byte for byte. Pure: facts in, a step out.

use std::time::Duration;

use super::judge_banner::shown;
use super::report::{Step, Verdict};
use super::software::Software;
use crate::Entry;
use crate::error::Error;

/// This run's test file names: a prefix unlikely to meet a user's.
#[derive(Debug, Clone)]
pub(crate) struct TestNames {
    pub prefix: String,
}

impl TestNames {
    pub(crate) fn plain(&self) -> String {
        format!("{}.txt", self.prefix)
    }
    pub(crate) fn renamed(&self) -> String {
        format!("{}-renamed.txt", self.prefix)
    }
    pub(crate) fn non_ascii(&self) -> String {
        format!("{}-ünïcødé-名前.txt", self.prefix)
    }

    /// This run's files in a listing, under whatever names the server gave them (the plain
    /// and renamed ones left out: the names step is about the non-ASCII one).
    pub(crate) fn ours(&self, entries: &[Entry]) -> Vec<Vec<u8>> {
        let (plain, renamed) = (self.plain(), self.renamed());
        entries
            .iter()
            .filter(|e| {
                e.name.starts_with(self.prefix.as_bytes())
                    && e.name != plain.as_bytes()
                    && e.name != renamed.as_bytes()
            })
            .map(|e| e.name.clone())
            .collect()
    }
}

/// What deleting a test file after a failed step left: said for the evidence.
#[derive(Debug)]
pub(crate) enum Removed {
    NoSession(Error),
    Deleted,
    /// The delete was refused as for a file that is not there.
    NotThere,
    Failed(Error),
}

pub(crate) fn removed(name: &str, removed: &Removed) -> String {
    match removed {
        Removed::NoSession(e) => {
            format!("; {name} may be left on the server (no session to delete it: {e})")
        }
        Removed::Deleted => format!("; the partial {name} was deleted"),
        Removed::NotThere => "; nothing was left".into(),
        Removed::Failed(e) => {
            format!("; {name} may be left on the server: delete it by hand ({e})")
        }
    }
}

/// How the upload went.
#[derive(Debug)]
pub(crate) enum Upload {
    NoSession(Error),
    /// STOR failed; what the clean-up left, said.
    Refused {
        error: Error,
        left: String,
    },
    /// STOR worked; SIZE's answer (`None`: not answered).
    Stored {
        size: Option<u64>,
    },
}

pub(crate) fn upload(
    name: &str,
    sent: u64,
    facts: &Upload,
    software: Software,
    elapsed: Duration,
) -> Step {
    let step = |verdict, evidence: String| Step::new("upload", verdict, evidence, elapsed);
    match facts {
        Upload::NoSession(e) => step(Verdict::Skipped, format!("no session: {e}")),
        Upload::Refused { error, left } => {
            let code = error.reply_code();
            let (cause, advice) = if code.is_some_and(|c| c.is_out_of_space()) {
                (
                    "the server has no room for the upload (disk full or the user's quota)".to_string(),
                    "free space on the server, or raise the user's quota".to_string(),
                )
            } else if code.is_some_and(|c| c.refuses_writing()) {
                (
                    "the server refuses uploads for this user in its login directory".to_string(),
                    format!("allow uploads: {}", software.write_setting()),
                )
            } else {
                ("the upload failed".to_string(), "check the server's log".to_string())
            };
            step(Verdict::Fail, format!("{error}{left}")).because(cause, advice)
        }
        Upload::Stored { size: Some(n) } if *n == sent => step(
            Verdict::Ok,
            format!("STOR {name}: {sent} bytes sent; SIZE says {n}"),
        ),
        Upload::Stored { size: Some(n) } => step(
            Verdict::Fail,
            format!("STOR {name}: {sent} bytes sent; SIZE says {n}"),
        )
        .because(
            "the file arrived altered or cut: the server converted it (ASCII mode) or the upload broke",
            "check the server's log and its ASCII/binary settings",
        ),
        Upload::Stored { size: None } => step(
            Verdict::Ok,
            format!("STOR {name}: {sent} bytes sent; SIZE not answered, size not compared"),
        ),
    }
}

pub(crate) fn rename(
    from: &str,
    to: &str,
    result: &Result<(), Error>,
    software: Software,
    elapsed: Duration,
) -> Step {
    match result {
        Ok(()) => Step::new("rename", Verdict::Ok, format!("{from} → {to}"), elapsed),
        Err(e) => Step::new("rename", Verdict::Warn, e.to_string(), elapsed).because(
            "the user may upload but not rename: clients that upload to a temporary name and rename it when complete fail",
            format!("allow renaming: {}", software.write_setting()),
        ),
    }
}

pub(crate) fn delete(
    name: &str,
    result: &Result<(), Error>,
    software: Software,
    elapsed: Duration,
) -> Step {
    match result {
        Ok(()) => Step::new("delete", Verdict::Ok, format!("{name} deleted"), elapsed),
        Err(e) => Step::new(
            "delete",
            Verdict::Warn,
            format!("{e}; the test file {name} is left on the server"),
            elapsed,
        )
        .because(
            "the user may upload but not delete",
            format!(
                "delete {name} by hand; allow deleting: {}",
                software.write_setting()
            ),
        ),
    }
}

/// How the non-ASCII name went.
#[derive(Debug)]
pub(crate) enum NonAscii {
    NoSession(Error),
    /// STOR failed; what the clean-up left, said.
    Refused {
        error: Error,
        left: String,
    },
    Stored {
        /// The listing after the upload: `Ok` with this run's names found in it.
        listed: Result<Vec<Vec<u8>>, Error>,
        /// This run's files the clean-up could not delete.
        left: Vec<Vec<u8>>,
    },
}

/// A non-ASCII name, sent as UTF-8 bytes, must come back in the listing as the same bytes.
pub(crate) fn non_ascii(
    name: &str,
    facts: &NonAscii,
    software: Software,
    elapsed: Duration,
) -> Step {
    let step = |verdict, evidence: String| Step::new("names", verdict, evidence, elapsed);
    let utf8_advice = || format!("store names as UTF-8: {}", software.utf8_setting());
    let (listed, left) = match facts {
        NonAscii::NoSession(e) => return step(Verdict::Skipped, format!("no session: {e}")),
        NonAscii::Refused { error, left } => {
            return step(Verdict::Warn, format!("{error}{left}")).because(
                "a file with a non-ASCII name cannot be uploaded, while an ASCII one can: the server or its file system refuses UTF-8 names",
                utf8_advice(),
            );
        }
        NonAscii::Stored { listed, left } => (listed, left),
    };
    let left = if left.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = left.iter().map(|n| format!("\"{}\"", shown(n))).collect();
        format!(
            "; left on the server (delete by hand): {}",
            names.join(", ")
        )
    };
    match listed {
        Ok(ours) if ours.iter().any(|n| *n == name.as_bytes()) => {
            let verdict = if left.is_empty() {
                Verdict::Ok
            } else {
                Verdict::Warn
            };
            step(
                verdict,
                format!("{name} uploaded, listed back byte for byte, deleted{left}"),
            )
        }
        Ok(ours) => {
            let seen: Vec<String> = ours.iter().map(|n| format!("\"{}\"", shown(n))).collect();
            let seen = if seen.is_empty() {
                "nothing like it".to_string()
            } else {
                seen.join(", ")
            };
            step(Verdict::Warn, format!("{name} uploaded, but listed as {seen}{left}")).because(
                "the server changes non-ASCII names (recodes them to another charset): files uploaded with such names are shown and found under other names",
                utf8_advice(),
            )
        }
        Err(e) => step(Verdict::Warn, format!("{e}{left}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_proto::{FileKind, Reply, ReplyCode};

    const MS: Duration = Duration::from_millis(7);

    fn refused(code: ReplyCode) -> Error {
        Error::Refused {
            command: "STOR x".into(),
            reply: Reply::new(code, "no"),
        }
    }

    #[test]
    fn uploads() {
        let left = || "; nothing was left".to_string();
        let table = [
            (Upload::NoSession(Error::Closed), Verdict::Skipped, None),
            (
                Upload::Refused {
                    error: refused(ReplyCode::INSUFFICIENT_STORAGE),
                    left: left(),
                },
                Verdict::Fail,
                Some("the server has no room"),
            ),
            (
                Upload::Refused {
                    error: refused(ReplyCode::EXCEEDED_STORAGE),
                    left: left(),
                },
                Verdict::Fail,
                Some("the server has no room"),
            ),
            (
                Upload::Refused {
                    error: refused(ReplyCode::FILE_UNAVAILABLE),
                    left: left(),
                },
                Verdict::Fail,
                Some("the server refuses uploads"),
            ),
            (
                Upload::Refused {
                    error: refused(ReplyCode::BAD_FILE_NAME),
                    left: left(),
                },
                Verdict::Fail,
                Some("the server refuses uploads"),
            ),
            (
                Upload::Refused {
                    error: refused(ReplyCode::FILE_BUSY),
                    left: left(),
                },
                Verdict::Fail,
                Some("the server refuses uploads"),
            ),
            (
                Upload::Refused {
                    error: refused(ReplyCode::LOCAL_ERROR),
                    left: left(),
                },
                Verdict::Fail,
                Some("the upload failed"),
            ),
            (Upload::Stored { size: Some(100) }, Verdict::Ok, None),
            (
                Upload::Stored { size: Some(99) },
                Verdict::Fail,
                Some("the file arrived altered or cut"),
            ),
            (Upload::Stored { size: None }, Verdict::Ok, None),
        ];
        for (facts, verdict, cause) in table {
            let step = upload("t.txt", 100, &facts, Software::Vsftpd, MS);
            assert_eq!(step.verdict, verdict, "{facts:?}");
            assert_eq!(
                step.cause
                    .as_deref()
                    .map(|c| &c[..cause.map_or(0, str::len)]),
                cause
            );
        }
        let refused = Upload::Refused {
            error: refused(ReplyCode::FILE_UNAVAILABLE),
            left: left(),
        };
        let step = upload("t.txt", 100, &refused, Software::Vsftpd, MS);
        assert_eq!(
            step.evidence,
            "the server refused STOR x: 550 no; nothing was left"
        );
        assert_eq!(
            step.advice.unwrap(),
            format!("allow uploads: {}", Software::Vsftpd.write_setting())
        );
    }

    #[test]
    fn clean_up_said() {
        let table = [
            (
                Removed::NoSession(Error::Closed),
                "; t may be left on the server (no session to delete it: the server closed the connection)",
            ),
            (Removed::Deleted, "; the partial t was deleted"),
            (Removed::NotThere, "; nothing was left"),
            (
                Removed::Failed(Error::Closed),
                "; t may be left on the server: delete it by hand (the server closed the connection)",
            ),
        ];
        for (facts, said) in table {
            assert_eq!(removed("t", &facts), said);
        }
    }

    #[test]
    fn renames_and_deletes() {
        let step = rename("a", "b", &Ok(()), Software::Wharf, MS);
        assert_eq!(
            (step.verdict, step.evidence.as_str()),
            (Verdict::Ok, "a → b")
        );
        let step = rename("a", "b", &Err(Error::Closed), Software::Wharf, MS);
        assert_eq!(step.verdict, Verdict::Warn);
        let step = delete("b", &Ok(()), Software::Wharf, MS);
        assert_eq!(
            (step.verdict, step.evidence.as_str()),
            (Verdict::Ok, "b deleted")
        );
        let step = delete("b", &Err(Error::Closed), Software::Wharf, MS);
        assert_eq!(
            step.evidence,
            "the server closed the connection; the test file b is left on the server"
        );
        assert!(
            step.advice
                .unwrap()
                .starts_with("delete b by hand; allow deleting: ")
        );
    }

    #[test]
    fn non_ascii_names() {
        let names = TestNames {
            prefix: "wc-1".into(),
        };
        let name = names.non_ascii();
        let entry = |n: &[u8]| Entry {
            name: n.to_vec(),
            kind: FileKind::File,
            size: None,
            mtime: None,
            link_target: None,
        };
        let listing = [
            entry(b"wc-1.txt"),
            entry(b"wc-1-renamed.txt"),
            entry(name.as_bytes()),
            entry(b"other"),
        ];
        assert_eq!(names.ours(&listing), vec![name.clone().into_bytes()]);
        let recoded = b"wc-1-\xfcn\xefc\xf8d\xe9.txt".to_vec();
        let table = [
            (
                NonAscii::NoSession(Error::Closed),
                Verdict::Skipped,
                "no session: the server closed the connection".to_string(),
            ),
            (
                NonAscii::Refused {
                    error: Error::Closed,
                    left: "; nothing was left".into(),
                },
                Verdict::Warn,
                "the server closed the connection; nothing was left".to_string(),
            ),
            (
                NonAscii::Stored {
                    listed: Ok(vec![name.clone().into_bytes()]),
                    left: vec![],
                },
                Verdict::Ok,
                format!("{name} uploaded, listed back byte for byte, deleted"),
            ),
            (
                NonAscii::Stored {
                    listed: Ok(vec![name.clone().into_bytes()]),
                    left: vec![name.clone().into_bytes()],
                },
                Verdict::Warn,
                format!(
                    "{name} uploaded, listed back byte for byte, deleted; left on the server (delete by hand): \"{}\"",
                    shown(name.as_bytes())
                ),
            ),
            (
                NonAscii::Stored {
                    listed: Ok(vec![recoded.clone()]),
                    left: vec![],
                },
                Verdict::Warn,
                format!("{name} uploaded, but listed as \"wc-1-\\xfcn\\xefc\\xf8d\\xe9.txt\""),
            ),
            (
                NonAscii::Stored {
                    listed: Ok(vec![]),
                    left: vec![],
                },
                Verdict::Warn,
                format!("{name} uploaded, but listed as nothing like it"),
            ),
            (
                NonAscii::Stored {
                    listed: Err(Error::Closed),
                    left: vec![],
                },
                Verdict::Warn,
                "the server closed the connection".to_string(),
            ),
        ];
        for (facts, verdict, evidence) in table {
            let step = non_ascii(&name, &facts, Software::Proftpd, MS);
            assert_eq!(
                (step.verdict, step.evidence.as_str()),
                (verdict, evidence.as_str())
            );
        }
    }
}
