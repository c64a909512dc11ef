//! What the client commands print: the progress bar, the result lines, listings.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use wharf_client::ops::{Events, Listed};
use wharf_client::tree::{TreeReport, plural};
use wharf_client::{Entry, FileKind, Progress};

use super::{Setup, clean, exit_code};

/// What this run moved: the rate, the time left and the result lines come from these bytes
/// only (not from what a resumed file already had), timed from when data first flowed.
#[derive(Debug, Default)]
struct Moved {
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Moved {
    fn secs(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    fn rate(&self) -> Option<f64> {
        let secs = self.first?.elapsed().as_secs_f64();
        (secs > 0.2 && self.bytes > 0).then(|| self.bytes as f64 / secs)
    }
}

/// Progress: an indicatif bar on a terminal, and always the count behind the result lines.
#[derive(Clone)]
pub struct Bar {
    pub(super) bar: Option<ProgressBar>,
    moved: Arc<Mutex<Moved>>,
}

impl Bar {
    pub(crate) fn new(show: bool) -> Bar {
        let moved = Arc::new(Mutex::new(Moved::default()));
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(bar_style(false, &moved));
            bar
        });
        Bar { bar, moved }
    }

    pub fn moved(&self) -> (u64, f64) {
        self.moved
            .lock()
            .map(|m| (m.bytes, m.secs()))
            .unwrap_or_default()
    }

    /// Starts counting afresh (the next file of a list, say).
    pub fn reset(&self) {
        if let Ok(mut m) = self.moved.lock() {
            *m = Moved::default();
        }
        if let Some(b) = &self.bar {
            b.set_position(0);
            b.set_length(0);
            b.reset();
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// Writes a line above the bar (or just to stderr).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

fn bar_style(known_total: bool, moved: &Arc<Mutex<Moved>>) -> ProgressStyle {
    // Decimal units (kB, MB), as the rate and README use: never MiB beside MB/s.
    let template = if known_total {
        "{decimal_bytes:>10}/{decimal_total_bytes:<10} [{bar:30}] {rate:>12} ETA {left}"
    } else {
        "{decimal_bytes:>10} {rate:>12} {elapsed}"
    };
    let (for_rate, for_left) = (moved.clone(), moved.clone());
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = for_rate.lock().ok().and_then(|m| m.rate());
                let _ = match rate {
                    Some(r) => write!(w, "{}", wharf_client::client::format_rate(r)),
                    None => write!(w, "-"),
                };
            },
        )
        .with_key(
            "left",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = for_left.lock().ok().and_then(|m| m.rate());
                let left = s.len().map(|l| l.saturating_sub(s.pos()));
                let _ = match (rate, left) {
                    (Some(r), Some(left)) => write!(w, "{}", format_secs(left as f64 / r)),
                    _ => write!(w, "-"),
                };
            },
        )
        .progress_chars("=> ")
}

/// `7s`, `3m05s`, `2h10m`.
fn format_secs(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `1.2 MB`, decimal units as transfer sizes are given next to rates.
pub(super) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Progress for Bar {
    fn set_total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(bar_style(true, &self.moved));
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(mut m) = self.moved.lock() {
            let now = Instant::now();
            m.first.get_or_insert(now);
            m.last = Some(now);
            m.bytes += bytes;
        }
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn resumed(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
}

/// `name: 5.0 MB in 1.2 s (4.2 MB/s)`: what this run moved for one file.
pub fn result_line(s: &Setup, name: &str, total: Option<u64>) {
    if s.quiet {
        return;
    }
    let (bytes, secs) = s.bar.moved();
    let mut line = format!("{}: {}", clean(name), format_size(bytes));
    if let Some(total) = total.filter(|&t| t != bytes) {
        line.push_str(&format!(" (of {})", format_size(total)));
    }
    line.push_str(&format!(" in {secs:.1} s"));
    if secs > 0.0 {
        line.push_str(&format!(
            " ({})",
            wharf_client::client::format_rate(bytes as f64 / secs)
        ));
    }
    s.bar.println(&line);
}

/// `NAME: verified (SHA-256)` after a transfer that `--verify` checked against the server's
/// hash; nothing with `-q` (a difference is an error, printed whatever `-q` says).
pub fn verified_line(s: &Setup, name: &str, verified: Option<wharf_proto::HashAlgorithm>) {
    if let (Some(algorithm), false) = (verified, s.quiet) {
        s.bar
            .println(&format!("{}: verified ({})", clean(name), algorithm.name()));
    }
}

/// Prints a listing: names, long lines (`-l`) or one JSON array of each entry's facts.
pub(super) fn print_listing(listed: &[Listed], long: bool, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<serde_json::Value> = listed
            .iter()
            .map(|l| {
                let mut facts = l.facts.as_deref().and_then(facts_json);
                if let Some(serde_json::Value::Object(o)) = &mut facts {
                    // The entry's name, not the path MLST was asked for.
                    let name = String::from_utf8_lossy(&l.entry.name).into_owned();
                    o.insert("name".into(), name.into());
                }
                facts.unwrap_or_else(|| entry_json(&l.entry))
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(all));
        let _ = out.flush();
        return;
    }
    let terminal = std::io::stdout().is_terminal();
    for l in listed {
        let mut line = if long {
            long_line(&l.entry)
        } else {
            let mut line = l.entry.name.clone();
            line.push(b'\n');
            line
        };
        if terminal {
            // A name from the server must not drive the user's terminal (escape sequences).
            let end = line.len().saturating_sub(1);
            for b in line.iter_mut().take(end) {
                if b.is_ascii_control() {
                    *b = b'?';
                }
            }
        }
        if out.write_all(&line).is_err() {
            break;
        }
    }
    let _ = out.flush();
}

/// `{"name": …, "type": "file", "size": "12", "modify": "2026…"}`: an MLSx line's facts, names
/// in lower case, values as sent.
fn facts_json(line: &[u8]) -> Option<serde_json::Value> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let space = line.iter().position(|&b| b == b' ')?;
    let (facts, name) = (line.get(..space)?, line.get(space + 1..)?);
    let mut object = serde_json::Map::new();
    object.insert(
        "name".into(),
        String::from_utf8_lossy(name).into_owned().into(),
    );
    for fact in facts.split(|&b| b == b';').filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(fact);
        let (key, value) = text.split_once('=')?;
        let value: serde_json::Value = match value.parse::<u64>() {
            Ok(n) if key.eq_ignore_ascii_case("size") => n.into(),
            _ => value.to_string().into(),
        };
        object.insert(key.to_ascii_lowercase(), value);
    }
    Some(serde_json::Value::Object(object))
}

/// The facts a LIST line gives, in the MLSD names.
fn entry_json(e: &Entry) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert(
        "name".into(),
        String::from_utf8_lossy(&e.name).into_owned().into(),
    );
    let kind = match e.kind {
        FileKind::Dir => "dir",
        FileKind::File => "file",
        FileKind::Symlink => "OS.unix=symlink",
        FileKind::Other => "other",
    };
    object.insert("type".into(), kind.into());
    if let Some(size) = e.size {
        object.insert("size".into(), size.into());
    }
    if let Some(t) = e.mtime {
        object.insert(
            "modify".into(),
            wharf_proto::UtcTime::from_unix(t).to_timeval().into(),
        );
    }
    if let Some(target) = &e.link_target {
        object.insert(
            "target".into(),
            String::from_utf8_lossy(target).into_owned().into(),
        );
    }
    serde_json::Value::Object(object)
}

/// `d         4096  2026-11-24 13:49  name`; a symlink shows `-> target` when LIST told it.
pub fn long_line(e: &Entry) -> Vec<u8> {
    let kind = match e.kind {
        FileKind::Dir => 'd',
        FileKind::File => '-',
        FileKind::Symlink => 'l',
        FileKind::Other => '?',
    };
    let size = e.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    let date = e.mtime.map_or_else(
        || "-               ".to_string(),
        |t| {
            let t = wharf_proto::UtcTime::from_unix(t);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year, t.month, t.day, t.hour, t.minute
            )
        },
    );
    let mut line = format!("{kind} {size:>14}  {date}  ").into_bytes();
    line.extend_from_slice(&e.name);
    if let Some(target) = &e.link_target {
        line.extend_from_slice(b" -> ");
        line.extend_from_slice(target);
    }
    line.push(b'\n');
    line
}

/// Prints what a tree copy left out or failed and its result line, and gives the exit code:
/// the first failure's.
pub(super) fn tree_exit(s: &Setup, report: &TreeReport) -> ExitCode {
    print_tree_report(s, report);
    match report.failures.first() {
        None => ExitCode::SUCCESS,
        Some((_, e)) => ExitCode::from(exit_code(e.kind())),
    }
}

/// What a tree copy left out or failed, and its result line (files, bytes, time, rate).
pub fn print_tree_report(s: &Setup, report: &TreeReport) {
    for skipped in &report.skipped {
        eprintln!("wharf: warning: skipped {}", clean(skipped));
    }
    for (name, e) in &report.failures {
        eprintln!("wharf: {}: {}", clean(name), clean(&e.to_string()));
    }
    if !s.quiet {
        let (_, secs) = s.bar.moved();
        let mut line = format!(
            "{} ({}) in {secs:.1} s",
            plural(report.files, "file"),
            format_size(report.bytes)
        );
        if secs > 0.0 {
            line.push_str(&format!(
                " ({})",
                wharf_client::client::format_rate(report.bytes as f64 / secs)
            ));
        }
        if report.already_complete > 0 {
            line.push_str(&format!(", {} already complete", report.already_complete));
        }
        if !report.skipped.is_empty() {
            line.push_str(&format!(", {} skipped", report.skipped.len()));
        }
        line.push_str(&format!(", {}", plural(report.sessions as u64, "session")));
        eprintln!("{line}");
        if let Some(algorithm) = report.verified_by {
            eprintln!(
                "{} verified ({})",
                plural(report.verified, "file"),
                algorithm.name()
            );
        }
    }
    if let Some(algorithm) = report
        .verified_by
        .filter(|a| wharf_client::verify::is_weak(*a))
    {
        eprintln!(
            "wharf: warning: {}",
            wharf_client::verify::weak_warning(algorithm)
        );
    }
    if let Some(why) = report.unverified_why {
        eprintln!(
            "wharf: warning: {} not verified: {why}",
            plural(report.unverified, "file")
        );
    }
    if !report.failures.is_empty() {
        eprintln!(
            "wharf: {} of {} files failed",
            report.failures.len(),
            report.failures.len() as u64 + report.files + report.already_complete
        );
    }
}

/// The events of a command: progress on the bar, messages above it, and the partial files
/// it may leave, to be named after a failure or Ctrl-C with how to continue them.
#[derive(Clone)]
pub struct Ui {
    pub bar: Bar,
    resume: &'static str,
}

impl Ui {
    /// `resume` says how to continue partial files this command leaves.
    pub fn new(bar: Bar, resume: &'static str) -> Ui {
        Ui { bar, resume }
    }
}

impl Progress for Ui {
    fn set_total(&self, total: u64) {
        self.bar.set_total(total);
    }

    fn advance(&self, bytes: u64) {
        self.bar.advance(bytes);
    }

    fn resumed(&self, bytes: u64) {
        self.bar.resumed(bytes);
    }
}

impl Events for Ui {
    fn message(&self, text: &str) {
        self.bar.println(&format!("wharf: {}", clean(text)));
    }

    fn partial(&self, path: &Path) {
        super::note_partial(path.to_path_buf(), self.resume);
    }
}
