//! `wharf shell URL`: an interactive session on one connection, with line editing, history and
//! completion of remote names (rustyline). A session the server dropped (idle timeout, a
//! restart) is opened again, in the same directory, and the command runs again.

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use wharf_client::verify::Verify;
use wharf_client::{Client, LogLine};

use crate::client_cli::{self, Common};

#[derive(clap::Args, Debug)]
pub struct ShellArgs {
    /// ftp://[user@]host[:port]/[directory to start in]
    url: String,
    #[command(flatten)]
    common: Common,
}

const HELP: &str = "\
commands (paths are remote unless the command starts with l; quote names with spaces):
  ls [-l] [PATH|PATTERN]   list            cd PATH       change directory
  pwd                      where you are   lcd PATH      change local directory
  lls [PATH]               list locally    lpwd          local directory
  get [-c] [-r] REMOTE [LOCAL]            put [-c] [-r] LOCAL [REMOTE]
  mget PATTERN...          get matching    mput PATTERN...  put matching local files
  rm PATH|PATTERN...       delete files    mkdir [-p] PATH...  rmdir PATH...
  mv FROM TO               rename          log [on|off]  the connection log
  verify [on|off|required] check get/put against the server's hash (HASH, XSHA512 …)
  help                     this text       quit          (also exit, bye, Ctrl-D)";

/// Remote names of the current directory, for completion.
#[derive(Clone, Default)]
struct Names(Arc<Mutex<Vec<(String, bool)>>>);

struct ShellHelper {
    names: Names,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let word = before.get(start..).unwrap_or_default();
        // The first word is a command; local commands complete nothing here.
        let first = before.split_whitespace().next().unwrap_or_default();
        if start == 0 || ["lcd", "lls", "put", "mput"].contains(&first) {
            return Ok((start, Vec::new()));
        }
        let names = self.names.0.lock().map(|n| n.clone()).unwrap_or_default();
        let found = names
            .into_iter()
            // A name with control characters is never put on the user's line.
            .filter(|(n, _)| n.starts_with(word) && !n.chars().any(char::is_control))
            .map(|(n, dir)| Pair {
                replacement: if dir { format!("{n}/") } else { n.clone() },
                display: n,
            })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

/// The live state of a shell.
pub(crate) struct Shell {
    setup: client_cli::Setup,
    client: Option<Client>,
    /// The remote directory, to come back to after a reconnect.
    cwd: Vec<u8>,
    names: Names,
    log_on: Arc<AtomicBool>,
    /// `verify on|off|required`: whether get and put check each file against the server's
    /// hash, as `--verify` does.
    verify: Verify,
}

pub fn run(args: ShellArgs) -> ExitCode {
    let runtime = match crate::start_runtime(Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut shell = match open(&runtime, &args) {
        Ok(shell) => shell,
        Err(code) => return code,
    };
    let names = shell.names.clone();
    let mut editor =
        match rustyline::Editor::<ShellHelper, rustyline::history::DefaultHistory>::new() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("wharf: cannot start the line editor: {e}");
                return ExitCode::from(2);
            }
        };
    editor.set_helper(Some(ShellHelper { names }));
    let mut history = History::load();
    for line in &history.lines {
        let _ = editor.add_history_entry(line.as_str());
    }
    let mut status = ExitCode::SUCCESS;
    loop {
        let prompt = format!(
            "wharf:{}> ",
            client_cli::clean(&String::from_utf8_lossy(&shell.cwd))
        );
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("wharf: {e}");
                status = ExitCode::from(2);
                break;
            }
        };
        let words = match split_words(&line) {
            Ok(w) => w,
            Err(why) => {
                eprintln!("wharf: {why}");
                continue;
            }
        };
        let Some((command, rest)) = words.split_first() else {
            continue;
        };
        let _ = editor.add_history_entry(line.as_str());
        history.lines.push(line.clone());
        if matches!(command.as_str(), "quit" | "exit" | "bye") {
            break;
        }
        let outcome = runtime.block_on(async {
            tokio::select! {
                r = shell.run_command(command, rest) => Some(r),
                _ = tokio::signal::ctrl_c() => None,
            }
        });
        match outcome {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                shell.setup.bar.finish();
                eprintln!("wharf: {}", client_cli::clean(&e.to_string()));
            }
            None => {
                shell.setup.bar.finish();
                eprintln!("\nwharf: interrupted (a partial download is kept: get -c resumes it)");
                // The session is out of step after an interrupted command.
                shell.client = None;
            }
        }
        let _ = std::io::stdout().flush();
    }
    history.save();
    if let Some(c) = shell.client.take() {
        runtime.block_on(c.quit());
    }
    status
}

/// The set-up and first session of a shell, in the URL's directory; the exit code (said why)
/// when it cannot start.
fn open(runtime: &tokio::runtime::Runtime, args: &ShellArgs) -> Result<Shell, ExitCode> {
    let log_on = Arc::new(AtomicBool::new(args.common.log));
    let mut common = args.common.clone();
    // The log is always wired; `log on|off` decides what shows.
    common.log = true;
    let mut setup = match client_cli::setup(&args.url, &common, true) {
        Ok(s) => s,
        Err(e) => return Err(client_cli::fail(&e)),
    };
    let shown = log_on.clone();
    setup.connector.options.log = Some(Arc::new(move |line: &LogLine| {
        if shown.load(Ordering::Relaxed) {
            eprintln!("{line}");
        }
    }));
    let names = Names::default();
    let mut shell = Shell {
        setup,
        client: None,
        cwd: Vec::new(),
        names: names.clone(),
        log_on,
        verify: Verify::Off,
    };
    let start = shell.setup.url.path_trimmed().to_vec();
    let opened = runtime.block_on(async {
        shell.connect().await?;
        if !start.is_empty() {
            shell.session().await?.cwd(&start).await?;
        }
        shell.refresh().await
    });
    opened.map_err(|e| client_cli::fail(&e))?;
    Ok(shell)
}

/// The lines typed, kept by hand (rustyline's file history would bring two more crates): the
/// last 1,000, one a line.
struct History {
    path: Option<PathBuf>,
    lines: Vec<String>,
}

impl History {
    fn load() -> History {
        let path = history_path();
        let lines = path
            .as_ref()
            .and_then(|h| std::fs::read_to_string(h).ok())
            .map(|t| t.lines().map(String::from).collect())
            .unwrap_or_default();
        History { path, lines }
    }

    fn save(&self) {
        let Some(h) = &self.path else {
            return;
        };
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let keep = self.lines.len().saturating_sub(1000);
        let mut text = self.lines.get(keep..).unwrap_or_default().join("\n");
        text.push('\n');
        let _ = std::fs::write(h, text);
    }
}

/// `$XDG_STATE_HOME/wharf/history`, else `~/.local/state/wharf/history`.
fn history_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("wharf").join("history"))
}

/// Words as a shell splits them: white space between, `'…'` and `"…"` quote, `\` escapes.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => w.extend(chars.next()),
                        Some(other) => w.push(other),
                        None => return Err(format!("missing closing {c}")),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

mod session;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"get "a b" c\ d 'e"f'"#).unwrap(),
            ["get", "a b", "c d", "e\"f"]
        );
        assert!(split_words("get 'open").is_err());
    }
}
