//! `wharf users`: the user database (SQLite or PostgreSQL) from the command line. A password is
//! never taken from the command line: it comes from stdin (`--password-stdin`, or a prompt on a
//! terminal), or one is generated and printed once.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wharf_server::auth::{Permissions, UserLimits, hash_password};
use wharf_server::identity::rules::AddressRules;
use wharf_server::identity::totp::TotpSecret;
use wharf_server::userdb::{DbError, DbUser, UserDb, parse_permissions, permissions_text};

#[derive(clap::Args)]
pub struct UsersArgs {
    /// The user database: sqlite:PATH (created when missing) or postgres://USER@HOST/DB
    #[arg(long, value_name = "URL")]
    db: String,
    /// Run as root, a SQLite database made now is given to this user (the server's run_as),
    /// readable by it only, with the directory it is made in [default: the owner of that
    /// directory when not root, else nobody]
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
    #[command(subcommand)]
    command: UsersCmd,
}

#[derive(clap::Subcommand)]
enum UsersCmd {
    /// Add a user (the password from stdin with --password-stdin, else generated and printed once)
    Add(AddArgs),
    /// List the users
    List {
        /// One JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one user
    Show { name: String },
    /// Set a user's password (prompted on a terminal, else the first line of stdin)
    Passwd { name: String },
    /// Change a user's home, permissions or limits
    Set(SetArgs),
    /// Stop a user from logging in (its sessions keep running until they end)
    Disable { name: String },
    /// Let a disabled user log in again
    Enable { name: String },
    /// Delete a user (its files stay)
    Del { name: String },
    /// Give a user one-time codes (TOTP) as a second factor: prints the otpauth:// URI and its
    /// QR code for an authenticator app; the code is then typed after the password
    Totp {
        name: String,
        /// Take the second factor away again
        #[arg(long)]
        remove: bool,
        /// The issuer an app shows beside the code
        #[arg(long, value_name = "NAME", default_value = "Wharf")]
        issuer: String,
    },
    /// Add the [[user]] entries of a config file (with their password hashes); existing names
    /// are left as they are
    Import {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct AddArgs {
    name: String,
    /// Home directory (absolute; default: the server's root)
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Permissions: read,write,delete,mkdir,rename or all [default: read]
    #[arg(long, value_name = "LIST")]
    perm: Option<String>,
    /// Read the password from the first line of stdin
    #[arg(long)]
    password_stdin: bool,
    /// The virtual host the user belongs to (a [[host]]'s first name) [default: the default host]
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(clap::Args)]
struct SetArgs {
    name: String,
    /// Home directory (absolute); `-` for the server's root
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Permissions: read,write,delete,mkdir,rename or all
    #[arg(long, value_name = "LIST")]
    perm: Option<String>,
    /// The virtual host the user belongs to; `-` for the default host
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Networks the user may log in from (CIDR, comma separated); `-` for any
    #[arg(long, value_name = "LIST")]
    allow: Option<String>,
    /// Networks the user may not log in from (CIDR, comma separated); `-` for none
    #[arg(long, value_name = "LIST")]
    deny: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Per-user limits; `0` in `set` removes one (the server's default applies again).
#[derive(clap::Args)]
struct LimitArgs {
    /// Sessions at once
    #[arg(long, value_name = "N")]
    max_sessions: Option<u32>,
    /// Download rate, bytes per second (K, M, G suffixes)
    #[arg(long, value_name = "RATE", value_parser = crate::bench_cli::parse_size)]
    download_rate: Option<u64>,
    /// Upload rate, bytes per second (K, M, G suffixes)
    #[arg(long, value_name = "RATE", value_parser = crate::bench_cli::parse_size)]
    upload_rate: Option<u64>,
    /// Bytes the home may hold (K, M, G suffixes)
    #[arg(long, value_name = "SIZE", value_parser = crate::bench_cli::parse_size)]
    quota: Option<u64>,
    /// Files the home may hold
    #[arg(long, value_name = "N")]
    quota_files: Option<u64>,
    /// Largest file an upload may make (K, M, G suffixes)
    #[arg(long, value_name = "SIZE", value_parser = crate::bench_cli::parse_size)]
    max_file_size: Option<u64>,
}

impl LimitArgs {
    /// Applies the limits given; `0` clears one.
    fn apply(&self, limits: &mut UserLimits) {
        fn set<T: Copy + PartialEq + Default>(slot: &mut Option<T>, given: Option<T>) {
            if let Some(v) = given {
                *slot = (v != T::default()).then_some(v);
            }
        }
        set(&mut limits.max_sessions, self.max_sessions);
        set(&mut limits.download_rate, self.download_rate);
        set(&mut limits.upload_rate, self.upload_rate);
        set(&mut limits.quota_bytes, self.quota);
        set(&mut limits.quota_files, self.quota_files);
        set(&mut limits.max_file_size, self.max_file_size);
    }
}

/// A failure: its message, and the exit code (2 for what the user typed, 1 for the database).
struct Failed(String, u8);

impl From<DbError> for Failed {
    fn from(e: DbError) -> Failed {
        let code = match e {
            DbError::Unavailable(_) => 1,
            _ => 2,
        };
        Failed(e.to_string(), code)
    }
}

impl Failed {
    /// A failure of this machine (a file, a directory): exit code 1.
    fn from_text(msg: impl Into<String>) -> Failed {
        Failed(msg.into(), 1)
    }
}

fn usage(msg: impl Into<String>) -> Failed {
    Failed(msg.into(), 2)
}

pub fn users(args: UsersArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed(msg, code)) => {
            eprintln!("wharf: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn run(args: UsersArgs) -> Result<(), Failed> {
    let db = UserDb::lazy(&args.db, Duration::from_secs(10))?;
    let sqlite = wharf_server::userdb::sqlite_file(&args.db);
    let owner = {
        let dir = sqlite
            .as_deref()
            .and_then(std::path::Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        // The nearest directory that exists decides (a missing one is made for that owner).
        let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
        crate::privilege::owner_for(existing, args.owner.as_deref())
    };
    // A database made now is the server's file: private, and the user's it runs as.
    let made = match &sqlite {
        Some(path) if !path.exists() => Some(prepare_dir(path, &owner)?),
        _ => None,
    };
    db.ready().await?;
    let result = command(&db, args.command).await;
    db.close().await;
    if let (Some(path), Some(made_dir)) = (&sqlite, made) {
        let mut files = vec![path.clone()];
        if let Some(dir) = made_dir {
            files.push(dir);
        }
        for f in files {
            crate::privilege::make_private(&f, &owner).map_err(Failed::from_text)?;
        }
        warn_unwritable(path, &owner);
    }
    result
}

/// Makes the directory of a new database when it is missing; `Some(dir)` when it was made.
fn prepare_dir(db: &std::path::Path, owner: &str) -> Result<Option<PathBuf>, Failed> {
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(None);
    };
    if dir.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Failed::from_text(format!("cannot make {}: {e}", dir.display())))?;
    crate::privilege::make_private(dir, owner).map_err(Failed::from_text)?;
    Ok(Some(dir.to_path_buf()))
}

/// As root: says when the server, running as `owner`, could not write the database's
/// directory (SQLite writes its -wal beside the file).
fn warn_unwritable(db: &std::path::Path, owner: &str) {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let owned = std::fs::metadata(dir).is_ok_and(|m| {
        crate::privilege::name_of(m.uid()).as_deref() == Some(owner) || m.mode() & 0o002 != 0
    });
    if !owned {
        eprintln!(
            "wharf: warning: {} is given to `{owner}`, but its directory {} is not: the server, running as `{owner}`, cannot write beside it (SQLite's -wal). Put the database in a directory of its own (e.g. sqlite:/var/lib/wharf/users.db, made for `{owner}` when missing)",
            db.display(),
            dir.display()
        );
    }
}

async fn command(db: &Arc<UserDb>, command: UsersCmd) -> Result<(), Failed> {
    let db = db.clone();
    match command {
        UsersCmd::Add(a) => add(&db, a).await,
        UsersCmd::List { json } => list(&db, json).await,
        UsersCmd::Show { name } => {
            let user = get(&db, &name).await?;
            print!("{}", describe(&user));
            Ok(())
        }
        UsersCmd::Passwd { name } => {
            let mut user = get(&db, &name).await?;
            let password = read_password(true)?;
            user.password_hash = hash(&password)?;
            db.update(&user).await?;
            eprintln!("password of `{name}` changed");
            Ok(())
        }
        UsersCmd::Set(a) => {
            let mut user = get(&db, &a.name).await?;
            if let Some(home) = &a.home {
                user.home = if home.as_os_str() == "-" {
                    None
                } else {
                    Some(absolute(home)?)
                };
            }
            if let Some(perm) = &a.perm {
                user.permissions = parse_permissions(perm).map_err(usage)?;
            }
            if let Some(h) = &a.host {
                user.host = (h != "-").then(|| wharf_server::config::normalize_host(h));
            }
            fn list(t: &Option<String>) -> Option<&str> {
                t.as_deref().map(|t| if t == "-" { "" } else { t })
            }
            if let Some(allow) = list(&a.allow) {
                user.rules.allowed = AddressRules::parse_text(Some(allow), None)
                    .map_err(|m| usage(format!("--allow: {m}")))?
                    .allowed;
            }
            if let Some(deny) = list(&a.deny) {
                user.rules.denied = AddressRules::parse_text(None, Some(deny))
                    .map_err(|m| usage(format!("--deny: {m}")))?
                    .denied;
            }
            a.limits.apply(&mut user.limits);
            db.update(&user).await?;
            print!("{}", describe(&user));
            Ok(())
        }
        UsersCmd::Disable { name } => set_enabled(&db, &name, false).await,
        UsersCmd::Enable { name } => set_enabled(&db, &name, true).await,
        UsersCmd::Del { name } => {
            db.delete(&name).await?;
            eprintln!("user `{name}` deleted (its files stay)");
            Ok(())
        }
        UsersCmd::Import { config } => import(&db, &config).await,
        UsersCmd::Totp {
            name,
            remove,
            issuer,
        } => totp(&db, &name, remove, &issuer).await,
    }
}

/// Enrols `name` in one-time codes (a new secret each time), or removes them.
async fn totp(db: &Arc<UserDb>, name: &str, remove: bool, issuer: &str) -> Result<(), Failed> {
    let mut user = get(db, name).await?;
    if remove {
        user.totp_secret = None;
        db.update(&user).await?;
        eprintln!("one-time codes of `{name}` removed: the password alone logs in");
        return Ok(());
    }
    let secret = TotpSecret::generate().map_err(Failed::from_text)?;
    user.totp_secret = Some(secret.base32());
    db.update(&user).await?;
    let uri = secret.uri(issuer, name);
    if std::io::stdout().is_terminal() {
        if let Ok(qr) = qrcode::QrCode::new(uri.as_bytes()) {
            print!("{}", terminal_qr(&qr));
        }
    }
    println!("{uri}");
    eprintln!(
        "`{name}` now types the app's six-digit code after the password (PASSWORD123456); \
         the secret is {}",
        secret.base32()
    );
    Ok(())
}

/// A QR code in half blocks, two rows a line, light modules drawn (for a dark terminal, as
/// `qrencode -t UTF8`), with a quiet zone of two modules.
fn terminal_qr(qr: &qrcode::QrCode) -> String {
    let width = qr.width();
    let colors = qr.to_colors();
    let quiet = 2;
    let size = width + 2 * quiet;
    let light = |x: usize, y: usize| -> bool {
        if x < quiet || y < quiet || x >= width + quiet || y >= width + quiet {
            return true;
        }
        colors
            .get((y - quiet) * width + (x - quiet))
            .is_none_or(|c| *c == qrcode::Color::Light)
    };
    let mut out = String::new();
    for y in (0..size).step_by(2) {
        for x in 0..size {
            let top = light(x, y);
            let bottom = y + 1 < size && light(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    out
}

async fn get(db: &Arc<UserDb>, name: &str) -> Result<DbUser, Failed> {
    db.find(name)
        .await?
        .ok_or_else(|| Failed::from(DbError::NoSuchUser(name.to_string())))
}

async fn set_enabled(db: &Arc<UserDb>, name: &str, enabled: bool) -> Result<(), Failed> {
    let mut user = get(db, name).await?;
    user.enabled = enabled;
    db.update(&user).await?;
    eprintln!(
        "user `{name}` {}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

fn absolute(home: &std::path::Path) -> Result<String, Failed> {
    if !home.is_absolute() {
        return Err(usage(format!(
            "--home {}: give an absolute path (the server reads it, maybe on another machine)",
            home.display()
        )));
    }
    home.to_str()
        .map(str::to_string)
        .ok_or_else(|| usage(format!("--home {}: not UTF-8", home.display())))
}

fn hash(password: &str) -> Result<String, Failed> {
    hash_password(password.as_bytes()).map_err(|e| Failed(e, 1))
}

async fn add(db: &Arc<UserDb>, a: AddArgs) -> Result<(), Failed> {
    let home = a.home.as_deref().map(absolute).transpose()?;
    let permissions = match &a.perm {
        Some(p) => parse_permissions(p).map_err(usage)?,
        None => Permissions::READ_ONLY,
    };
    let (password, generated) = if a.password_stdin {
        (read_password(false)?, false)
    } else {
        (generate_password()?, true)
    };
    let mut limits = UserLimits::default();
    a.limits.apply(&mut limits);
    let user = DbUser {
        name: a.name.clone(),
        password_hash: hash(&password)?,
        home,
        permissions,
        limits,
        enabled: true,
        totp_secret: None,
        rules: Default::default(),
        host: a.host.as_deref().map(wharf_server::config::normalize_host),
        created_at: 0,
        updated_at: 0,
        last_login: None,
    };
    db.add(&user).await?;
    if generated {
        // Printed once, here; only its hash is kept.
        println!("{password}");
        eprintln!(
            "user `{}` added; its password is above (shown only now)",
            a.name
        );
    } else {
        eprintln!("user `{}` added", a.name);
    }
    Ok(())
}

/// A password from stdin: on a terminal, prompted twice without echo (when `prompt`); else the
/// first line.
fn read_password(prompt: bool) -> Result<String, Failed> {
    let stdin = std::io::stdin();
    let password = if prompt && stdin.is_terminal() {
        match (
            crate::prompt_hidden("New password: "),
            crate::prompt_hidden("Again: "),
        ) {
            (Some(a), Some(b)) if a == b => a,
            (Some(_), Some(_)) => return Err(usage("passwords do not match")),
            _ => return Err(usage("cannot read the password")),
        }
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| usage(format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(usage("empty password"));
    }
    Ok(password)
}

/// 20 letters and digits from the system's random source (about 116 bits).
fn generate_password() -> Result<String, Failed> {
    wharf_server::admin::generate_token(20).map_err(|e| Failed(e, 1))
}

fn when(t: Option<i64>) -> String {
    match t {
        Some(secs) if secs > 0 => {
            let t = wharf_proto::UtcTime::from_unix(secs);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            )
        }
        _ => "never".into(),
    }
}

fn describe(u: &DbUser) -> String {
    let l = &u.limits;
    let opt = |v: Option<u64>| v.map_or_else(|| "default".to_string(), |n| n.to_string());
    format!(
        "name:          {}\nhost:          {}\nenabled:       {}\none-time code: {}\nallowed from:  {}\ndenied from:   {}\nhome:          {}\npermissions:   {}\nmax sessions:  {}\ndownload rate: {}\nupload rate:   {}\nquota:         {}\nquota files:   {}\nmax file size: {}\ncreated:       {}\nupdated:       {}\nlast login:    {}\n",
        u.name,
        u.host.as_deref().unwrap_or("(the default host)"),
        if u.enabled { "yes" } else { "no" },
        if u.totp_secret.is_some() { "yes" } else { "no" },
        u.rules.allowed_text().unwrap_or_else(|| "anywhere".into()),
        u.rules.denied_text().unwrap_or_else(|| "-".into()),
        u.home.as_deref().unwrap_or("(the server's root)"),
        permissions_text(u.permissions),
        opt(l.max_sessions.map(u64::from)),
        opt(l.download_rate),
        opt(l.upload_rate),
        opt(l.quota_bytes),
        opt(l.quota_files),
        opt(l.max_file_size),
        when(Some(u.created_at)),
        when(Some(u.updated_at)),
        when(u.last_login),
    )
}

async fn list(db: &Arc<UserDb>, json: bool) -> Result<(), Failed> {
    let users = db.list().await?;
    if json {
        let items: Vec<serde_json::Value> = users.iter().map(DbUser::to_json).collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:<28} {:<20} LAST LOGIN",
        "NAME", "ENABLED", "HOME", "PERMISSIONS"
    );
    for u in &users {
        println!(
            "{:<24} {:<8} {:<28} {:<20} {}",
            u.name,
            if u.enabled { "yes" } else { "no" },
            u.home.as_deref().unwrap_or("-"),
            permissions_text(u.permissions),
            when(u.last_login)
        );
    }
    Ok(())
}

/// The `[[user]]` entries of a config file, checked as the server checks them.
async fn import(db: &Arc<UserDb>, path: &std::path::Path) -> Result<(), Failed> {
    let file = wharf_server::config::FileConfig::load(path).map_err(|e| usage(e.to_string()))?;
    let entries = file.users.len();
    let root = file.root.clone();
    let settings = wharf_server::config::Settings::build(
        file,
        wharf_server::config::Overrides {
            root,
            ..Default::default()
        },
    )
    .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let (mut added, mut kept) = (0, 0);
    for u in settings.users.iter().take(entries) {
        let wharf_server::auth::Secret::Hash(hash) = &u.secret;
        let home = (u.home != settings.root).then(|| u.home.to_string_lossy().into_owned());
        let user = DbUser {
            name: u.name.clone(),
            password_hash: hash.clone(),
            home,
            permissions: u.permissions,
            limits: u.limits,
            enabled: true,
            totp_secret: u.totp.as_ref().map(|t| t.base32()),
            rules: u.rules.clone(),
            host: u.host.clone(),
            created_at: 0,
            updated_at: 0,
            last_login: None,
        };
        match db.add(&user).await {
            Ok(()) => added += 1,
            Err(DbError::Exists(_)) => {
                eprintln!("`{}` exists already: left as it is", u.name);
                kept += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!(
        "imported {added} users from {} ({kept} already there)",
        path.display()
    );
    Ok(())
}
