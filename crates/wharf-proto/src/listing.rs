//! Directory listing formats: `ls -l` lines for LIST (what every client parses) and RFC 3659
//! facts for MLST/MLSD.

use crate::time::UtcTime;
use std::io::Write as _;

/// What kind of file system object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What a listing needs to know about one entry. Filled by the storage layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub name: Vec<u8>,
    pub kind: FileKind,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Unix permission bits (the low 12 bits of `st_mode`).
    pub mode: u32,
    pub nlink: u64,
}

/// Six months, the boundary `ls -l` uses between "Mmm dd hh:mm" and "Mmm dd  yyyy".
const SIX_MONTHS: i64 = 182 * 86_400 + 43_200;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends one `ls -l` line (CRLF-terminated) for `info` to `out`. `now` (Unix seconds) decides
/// the date form: a time within six months, the year otherwise. Owner and group are shown as
/// `ftp ftp`: real ids mean nothing to a jailed client and cost a lookup per entry.
pub fn push_list_line(out: &mut Vec<u8>, info: &FileInfo, now: i64) {
    let type_char = match info.kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::File => '-',
        FileKind::Other => '?',
    };
    let mut perms = [b'-'; 9];
    let bits = [
        (0o400, b'r'),
        (0o200, b'w'),
        (0o100, b'x'),
        (0o040, b'r'),
        (0o020, b'w'),
        (0o010, b'x'),
        (0o004, b'r'),
        (0o002, b'w'),
        (0o001, b'x'),
    ];
    for (slot, (bit, ch)) in perms.iter_mut().zip(bits) {
        if info.mode & bit != 0 {
            *slot = ch;
        }
    }
    let t = UtcTime::from_unix(info.mtime);
    let month = MONTHS
        .get((t.month as usize).wrapping_sub(1))
        .unwrap_or(&"Jan");
    let recent = info.mtime <= now + 3600 && now - info.mtime < SIX_MONTHS;
    // Written straight into `out`: no allocation per line (a listing may have many thousands).
    let perms = std::str::from_utf8(&perms).unwrap_or("---------");
    let _ = write!(
        out,
        "{type_char}{perms} {:>3} ftp      ftp      {:>12} {month} {:>2} ",
        info.nlink.max(1),
        info.size,
        t.day,
    );
    let _ = if recent {
        write!(out, "{:02}:{:02} ", t.hour, t.minute)
    } else {
        write!(out, " {:04} ", t.year)
    };
    push_name(out, &info.name);
    out.extend_from_slice(b"\r\n");
}

/// Appends a name to a listing line. A CR or LF inside a name would split the listing, so it is
/// written as NUL (RFC 959's convention for LF in a path name).
fn push_name(out: &mut Vec<u8>, name: &[u8]) {
    out.extend(
        name.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { 0 } else { b }),
    );
}

/// Appends one NLST line: the bare name (RFC 1123), CRLF-terminated.
pub fn push_nlst_line(out: &mut Vec<u8>, name: &[u8]) {
    push_name(out, name);
    out.extend_from_slice(b"\r\n");
}

/// The MLSx facts the server can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Type,
    Size,
    Modify,
    Perm,
    UnixMode,
}

impl Fact {
    pub const ALL: [Fact; 5] = [
        Fact::Type,
        Fact::Size,
        Fact::Modify,
        Fact::Perm,
        Fact::UnixMode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fact::Type => "type",
            Fact::Size => "size",
            Fact::Modify => "modify",
            Fact::Perm => "perm",
            Fact::UnixMode => "UNIX.mode",
        }
    }

    /// Facts reported unless the client selects others with `OPTS MLST`.
    pub fn is_default(self) -> bool {
        !matches!(self, Fact::UnixMode)
    }

    fn from_name(name: &[u8]) -> Option<Fact> {
        Fact::ALL
            .into_iter()
            .find(|f| f.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

impl Fact {
    fn bit(self) -> u8 {
        match self {
            Fact::Type => 1,
            Fact::Size => 2,
            Fact::Modify => 4,
            Fact::Perm => 8,
            Fact::UnixMode => 16,
        }
    }
}

/// A selection of facts (`OPTS MLST`): a bit set, so that a session keeps it in one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FactSet(u8);

impl FactSet {
    /// Every fact.
    pub const ALL: FactSet = FactSet(31);
    /// The facts reported unless the client selects others.
    pub const DEFAULT: FactSet = FactSet(1 | 2 | 4 | 8);

    pub fn of(facts: &[Fact]) -> FactSet {
        FactSet(facts.iter().fold(0, |acc, f| acc | f.bit()))
    }

    pub fn contains(self, f: Fact) -> bool {
        self.0 & f.bit() != 0
    }

    pub fn insert(&mut self, f: Fact) {
        self.0 |= f.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The FEAT line for MLST: ` MLST type*;size*;modify*;perm*;UNIX.mode;` with the selected ones
/// starred (RFC 3659 §7.8).
pub fn mlst_feat_line(selected: FactSet) -> String {
    let mut s = String::from(" MLST ");
    for f in Fact::ALL {
        s.push_str(f.name());
        if selected.contains(f) {
            s.push('*');
        }
        s.push(';');
    }
    s
}

/// Parses the argument of `OPTS MLST fact;fact;`: unknown facts are ignored, as RFC 3659 §7.9
/// says. Returns the selection and the text for the 200 reply.
pub fn parse_mlst_opts(arg: &[u8]) -> (FactSet, String) {
    let mut selected = Vec::new();
    for part in arg.split(|&b| b == b';') {
        if let Some(f) = Fact::from_name(part.trim_ascii()) {
            if !selected.contains(&f) {
                selected.push(f);
            }
        }
    }
    let mut text = String::from("MLST OPTS ");
    for f in &selected {
        text.push_str(f.name());
        text.push(';');
    }
    (FactSet::of(&selected), text)
}

/// Which operations the user may perform, for the `perm` fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PermFacts {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub mkdir: bool,
    pub rename: bool,
}

/// The kind of entry for the `type` fact: a directory listed as itself or its parent is
/// `cdir`/`pdir` in MLSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlsxRole {
    Entry,
    Current,
    Parent,
}

/// Appends the facts and name of one entry: `type=file;size=3;modify=…; name` (no line end).
pub fn push_mlsx_entry(
    out: &mut Vec<u8>,
    info: &FileInfo,
    facts: FactSet,
    perms: PermFacts,
    role: MlsxRole,
) {
    for fact in Fact::ALL {
        if !facts.contains(fact) {
            continue;
        }
        let value = match fact {
            Fact::Type => match (role, info.kind) {
                (MlsxRole::Current, _) => "cdir".to_string(),
                (MlsxRole::Parent, _) => "pdir".to_string(),
                (_, FileKind::Dir) => "dir".to_string(),
                (_, FileKind::File) => "file".to_string(),
                (_, FileKind::Symlink) => "OS.unix=symlink".to_string(),
                (_, FileKind::Other) => "OS.unix=special".to_string(),
            },
            Fact::Size => info.size.to_string(),
            Fact::Modify => UtcTime::from_unix(info.mtime).to_timeval(),
            Fact::UnixMode => format!("0{:o}", info.mode & 0o7777),
            Fact::Perm => perm_string(info.kind, perms),
        };
        out.extend_from_slice(fact.name().as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b';');
    }
    out.push(b' ');
    push_name(out, &info.name);
}

fn perm_string(kind: FileKind, p: PermFacts) -> String {
    let mut s = String::new();
    if kind == FileKind::Dir {
        if p.write {
            s.push('c');
        }
        if p.delete {
            s.push('d');
        }
        s.push('e');
        if p.rename {
            s.push('f');
        }
        s.push('l');
        if p.mkdir {
            s.push('m');
        }
        if p.delete {
            s.push('p');
        }
    } else {
        if p.write {
            s.push('a');
        }
        if p.delete {
            s.push('d');
        }
        if p.rename {
            s.push('f');
        }
        if p.read {
            s.push('r');
        }
        if p.write {
            s.push('w');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, mtime: i64) -> FileInfo {
        FileInfo {
            name: name.as_bytes().to_vec(),
            kind: FileKind::File,
            size: 1234,
            mtime,
            mode: 0o644,
            nlink: 1,
        }
    }

    #[test]
    fn list_line_recent_and_old() {
        let now = 1795478399; // 2026-11-23 23:59:59
        let mut out = Vec::new();
        push_list_line(&mut out, &file("a.txt", now - 3600), now);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-rw-r--r--   1 ftp      ftp              1234 Nov 23 22:59 a.txt\r\n"
        );
        let mut out = Vec::new();
        let mut d = file("old dir", 0);
        d.kind = FileKind::Dir;
        d.mode = 0o755;
        d.nlink = 3;
        push_list_line(&mut out, &d, now);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "drwxr-xr-x   3 ftp      ftp              1234 Jan  1  1970 old dir\r\n"
        );
    }

    #[test]
    fn names_with_newlines_do_not_split_lines() {
        let mut out = Vec::new();
        push_nlst_line(&mut out, b"a\r\nb");
        assert_eq!(out, b"a\0\0b\r\n");
    }

    #[test]
    fn mlsx_entry() {
        let mut out = Vec::new();
        let perms = PermFacts {
            read: true,
            ..PermFacts::default()
        };
        push_mlsx_entry(
            &mut out,
            &file("x", 0),
            FactSet::ALL,
            perms,
            MlsxRole::Entry,
        );
        assert_eq!(
            out,
            b"type=file;size=1234;modify=19700101000000;perm=r;UNIX.mode=0644; x"
        );
        let mut out = Vec::new();
        let mut d = file(".", 0);
        d.kind = FileKind::Dir;
        let all = PermFacts {
            read: true,
            write: true,
            delete: true,
            mkdir: true,
            rename: true,
        };
        push_mlsx_entry(
            &mut out,
            &d,
            FactSet::of(&[Fact::Type, Fact::Perm]),
            all,
            MlsxRole::Current,
        );
        assert_eq!(out, b"type=cdir;perm=cdeflmp; .");
    }

    #[test]
    fn mlst_opts_and_feat() {
        let (sel, text) = parse_mlst_opts(b"size;Type;bogus;");
        assert_eq!(sel, FactSet::of(&[Fact::Size, Fact::Type]));
        assert_eq!(text, "MLST OPTS size;type;");
        assert_eq!(
            mlst_feat_line(FactSet::of(&[Fact::Type])),
            " MLST type*;size;modify;perm;UNIX.mode;"
        );
        let (sel, _) = parse_mlst_opts(b"");
        assert!(sel.is_empty());
    }
}
