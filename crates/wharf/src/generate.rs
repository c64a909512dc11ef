//! `wharf generate`: the manual pages and shell completions the package ships, made from the
//! same definitions the program uses — the clap command for `wharf(1)` and each subcommand's
//! page and the completions, the config parser's own fields for `wharf.toml(5)` (see
//! `wharf_server::config_keys`) — so they cannot drift from it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// wharf.1, wharf-SUBCOMMAND.1 for each subcommand, wharf.toml.5
    Man { dir: PathBuf },
    /// wharf.bash, _wharf (zsh), wharf.fish
    Completions { dir: PathBuf },
}

pub fn run(args: GenerateArgs, cmd: clap::Command) -> ExitCode {
    let r = match args.what {
        What::Man { dir } => man(&dir, cmd),
        What::Completions { dir } => completions(&dir, cmd),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::from(1)
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(dir.join(name), bytes).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

fn man(dir: &Path, cmd: clap::Command) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(|e| e.to_string())?;
    write(dir, "wharf.1", &page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("wharf-{}", sub.get_name());
        // A command name is a `&'static str` (without clap's `string` feature): this runs once.
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        let sub = sub.clone().name(static_name).display_name(static_name);
        let mut page = Vec::new();
        clap_mangen::Man::new(sub)
            .section("1")
            .render(&mut page)
            .map_err(|e| e.to_string())?;
        write(dir, &format!("{name}.1"), &page)?;
    }
    write(dir, "wharf.toml.5", config_page().as_bytes())
}

/// Text for roff: backslashes doubled, and a line never starting with a dot or a quote.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// wharf.toml(5): every key the parser takes, by table, with what it means.
fn config_page() -> String {
    let mut out = String::from(
        ".TH WHARF.TOML 5 \"\" \"wharf\" \"File Formats\"\n.SH NAME\nwharf.toml \\- configuration file of the Wharf FTP server\n.SH SYNOPSIS\n/etc/wharf/wharf.toml, read by \\fBwharf serve \\-\\-config\\fR FILE\n.SH DESCRIPTION\nA TOML file. Command\\-line flags win over it. An unknown key is an error, named with its line, and the server exits with code 2; \\fBwharf serve \\-\\-check\\fR checks a file without starting. SIGHUP reads it again.\n",
    );
    let keys = wharf_server::config_keys::parser_keys();
    for table in wharf_server::config_keys::TABLES {
        let prefix = table.trim_matches(|c| c == '[' || c == ']');
        let title = if table.is_empty() { "Top level" } else { table };
        out.push_str(&format!(".SH {}\n", roff(title)));
        for key in &keys {
            let (t, k) = key.split_once('.').unwrap_or(("", key));
            if t != prefix {
                continue;
            }
            let text = wharf_server::config_keys::describe(key).unwrap_or("");
            out.push_str(&format!(".TP\n.B {}\n{}\n", roff(k), roff(text)));
        }
    }
    out.push_str(".SH FILES\n/etc/wharf/wharf.toml, /var/lib/wharf (the user database), /var/log/wharf/xferlog\n.SH SEE ALSO\n\\fBwharf\\fR(1), \\fBwharf\\-serve\\fR(1)\n");
    out
}

fn completions(dir: &Path, mut cmd: clap::Command) -> Result<(), String> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (shell, name) in [
        (Shell::Bash, "wharf.bash"),
        (Shell::Zsh, "_wharf"),
        (Shell::Fish, "wharf.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "wharf", &mut out);
        let mut f = std::fs::File::create(dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        f.write_all(&out).map_err(|e| e.to_string())?;
    }
    Ok(())
}
