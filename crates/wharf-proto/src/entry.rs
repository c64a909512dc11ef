//! Reading listings that a server sent: RFC 3659 MLSx entries, and LIST lines in the two formats
//! seen in the wild, Unix `ls -l` and DOS/IIS. LIST has no standard, so the parser looks for the
//! date (the one part every variant has) and reads size and name around it.

use crate::listing::FileKind;
use crate::time::UtcTime;

/// One entry of a directory listing, as far as the listing told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name, bytes as sent (no lossy decoding: a client writes it to disk as it is).
    pub name: Vec<u8>,
    pub kind: FileKind,
    pub size: Option<u64>,
    /// Modification time, seconds since the Unix epoch (UTC for MLSx; server time for LIST).
    pub mtime: Option<i64>,
    /// Where a symbolic link points, when a LIST line showed it (`name -> target`).
    pub link_target: Option<Vec<u8>>,
}

/// What an MLSD line is: an entry of the directory, or the directory itself / its parent
/// (`type=cdir`, `type=pdir`), which a client skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlsxLine {
    Entry(Entry),
    SelfOrParent,
}

/// Parses one MLSx line: `fact=value;fact=value; name` (RFC 3659 §7.2). Fact names and the
/// values of `type` are case-insensitive. Returns `None` for a line that is not of that form.
pub fn parse_mlsx_line(line: &[u8]) -> Option<MlsxLine> {
    let line = trim_eol(line);
    // A line from MLST's reply starts with a space; an MLSD line does not.
    let line = line.strip_prefix(b" ").unwrap_or(line);
    let space = line.iter().position(|&b| b == b' ')?;
    let (facts, name) = (line.get(..space)?, line.get(space + 1..)?);
    if name.is_empty() {
        return None;
    }
    let mut kind = FileKind::File;
    let mut size = None;
    let mut mtime = None;
    for fact in facts.split(|&b| b == b';').filter(|f| !f.is_empty()) {
        let eq = fact.iter().position(|&b| b == b'=')?;
        let (key, value) = (fact.get(..eq)?, fact.get(eq + 1..)?);
        if key.eq_ignore_ascii_case(b"type") {
            if value.eq_ignore_ascii_case(b"cdir") || value.eq_ignore_ascii_case(b"pdir") {
                return Some(MlsxLine::SelfOrParent);
            }
            kind = if value.eq_ignore_ascii_case(b"dir") {
                FileKind::Dir
            } else if value.eq_ignore_ascii_case(b"file") {
                FileKind::File
            } else if starts_with_ignore_case(value, b"os.unix=slink")
                || starts_with_ignore_case(value, b"os.unix=symlink")
            {
                FileKind::Symlink
            } else {
                FileKind::Other
            };
        } else if key.eq_ignore_ascii_case(b"size") {
            size = parse_u64(value);
        } else if key.eq_ignore_ascii_case(b"modify") {
            mtime = UtcTime::parse_timeval(value).map(UtcTime::to_unix);
        }
    }
    Some(MlsxLine::Entry(Entry {
        name: name.to_vec(),
        kind,
        size,
        mtime,
        link_target: None,
    }))
}

/// Parses one LIST line in Unix `ls -l` form or DOS/IIS form. `now` (Unix seconds) settles the
/// year of `Mmm dd hh:mm` dates, which `ls` shows for the last six months. Returns `None` for
/// lines that are neither (`total 12`, blank lines, banners some servers add).
pub fn parse_list_line(line: &[u8], now: i64) -> Option<Entry> {
    let line = trim_eol(line);
    let first = *line.first()?;
    if first.is_ascii_digit() {
        parse_dos_line(line)
    } else {
        parse_unix_line(line, now)
    }
}

const MONTHS: [&[u8]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// `drwxr-xr-x 2 owner group 4096 Nov 24 13:49 name`, with or without the group column, with
/// numeric or named owners. Found by the date: month, day, then time or year.
fn parse_unix_line(line: &[u8], now: i64) -> Option<Entry> {
    let kind = match line.first()? {
        b'd' => FileKind::Dir,
        b'-' => FileKind::File,
        b'l' => FileKind::Symlink,
        b'b' | b'c' | b'p' | b's' => FileKind::Other,
        _ => return None,
    };
    let fields = split_fields(line);
    // The date is a month, a day and a time or year. A month name can also be an owner or a
    // group (user `jan`), so take the first month that the rest of a date follows. The month is
    // never the first field (that is the mode) and has the size before it.
    let (m, month, day, time_or_year) = (2..fields.len()).find_map(|i| {
        let month = month_of(field(line, *fields.get(i)?))?;
        let day = parse_u64(field(line, *fields.get(i + 1)?)).filter(|d| (1..=31).contains(d))?;
        let t = field(line, *fields.get(i + 2)?);
        (parse_clock(t).is_some() || (t.len() == 4 && parse_u64(t).is_some()))
            .then_some((i, month, day, t))
    })?;
    let size = parse_u64(field(line, *fields.get(m - 1)?));
    // The name starts one space after the time or year: a name may begin with spaces.
    let (_, date_end) = *fields.get(m + 2)?;
    fields.get(m + 3)?;
    let mut name = line.get(date_end + 1..)?.to_vec();
    let mut link_target = None;
    if kind == FileKind::Symlink {
        if let Some(arrow) = find(&name, b" -> ") {
            link_target = name.get(arrow + 4..).map(<[u8]>::to_vec);
            name.truncate(arrow);
        }
    }
    if name.is_empty() {
        return None;
    }
    let mtime = unix_date(month, day as u32, time_or_year, now);
    Some(Entry {
        name,
        kind,
        size,
        mtime,
        link_target,
    })
}

/// `11-24-26  01:49PM       <DIR>          name` or `11-24-2026  13:49  1234 name` (IIS).
fn parse_dos_line(line: &[u8]) -> Option<Entry> {
    let fields = split_fields(line);
    let date = field(line, *fields.first()?);
    let time = field(line, *fields.get(1)?);
    let size_or_dir = field(line, *fields.get(2)?);
    let (name_start, _) = *fields.get(3)?;
    let name = line.get(name_start..)?.to_vec();
    let mut parts = date.split(|&b| b == b'-' || b == b'/');
    let month = parse_u64(parts.next()?)?;
    let day = parse_u64(parts.next()?)?;
    let mut year = parse_u64(parts.next()?)? as i64;
    if parts.next().is_some() {
        return None;
    }
    if year < 70 {
        year += 2000;
    } else if year < 100 {
        year += 1900;
    }
    let (hour, minute) = parse_clock(time)?;
    let (kind, size) = if size_or_dir.eq_ignore_ascii_case(b"<DIR>") {
        (FileKind::Dir, None)
    } else {
        (FileKind::File, Some(parse_u64(size_or_dir)?))
    };
    let mtime = civil(year, month as u32, day as u32, hour, minute);
    Some(Entry {
        name,
        kind,
        size,
        mtime,
        link_target: None,
    })
}

/// `01:49PM`, `1:49AM`, `13:49`.
fn parse_clock(text: &[u8]) -> Option<(u32, u32)> {
    let (clock, pm) = if let Some(t) = strip_suffix_ignore_case(text, b"pm") {
        (t, Some(true))
    } else if let Some(t) = strip_suffix_ignore_case(text, b"am") {
        (t, Some(false))
    } else {
        (text, None)
    };
    let colon = clock.iter().position(|&b| b == b':')?;
    let hour = parse_u64(clock.get(..colon)?)? as u32;
    let minute = parse_u64(clock.get(colon + 1..)?)? as u32;
    let hour = match pm {
        Some(true) if hour < 12 => hour + 12,
        Some(false) if hour == 12 => 0,
        _ => hour,
    };
    (hour < 24 && minute < 60).then_some((hour, minute))
}

/// The date of an `ls -l` line: `hh:mm` means within the last six months (so the year is this
/// year, or last year when that would put the date in the future), otherwise a year.
fn unix_date(month: u32, day: u32, time_or_year: &[u8], now: i64) -> Option<i64> {
    if let Some((hour, minute)) = parse_clock(time_or_year) {
        let year = UtcTime::from_unix(now).year;
        let this_year = civil(year, month, day, hour, minute)?;
        // A day of slack for time zones between server and client.
        if this_year > now + 86_400 {
            civil(year - 1, month, day, hour, minute)
        } else {
            Some(this_year)
        }
    } else {
        let year = parse_u64(time_or_year)?;
        civil(year as i64, month, day, 0, 0)
    }
}

fn civil(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> Option<i64> {
    let t = UtcTime {
        year,
        month,
        day,
        hour,
        minute,
        second: 0,
    };
    UtcTime::parse_timeval(t.to_timeval().as_bytes()).map(UtcTime::to_unix)
}

fn month_of(text: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(text))
        .map(|i| i as u32 + 1)
}

/// Start and end offsets of the space-separated fields of `line`.
fn split_fields(line: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        match (b == b' ' || b == b'\t', start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

fn field(line: &[u8], (start, end): (usize, usize)) -> &[u8] {
    line.get(start..end).unwrap_or_default()
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

fn strip_suffix_ignore_case<'a>(text: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    let cut = text.len().checked_sub(suffix.len())?;
    let (head, tail) = text.split_at(cut);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-24 12:00:00 UTC
    const NOW: i64 = 1_795_521_600;

    fn entry(line: &str) -> Entry {
        parse_list_line(line.as_bytes(), NOW).unwrap()
    }

    #[test]
    fn vsftpd_and_proftpd_lines() {
        let e = entry("-rw-r--r--    1 0        0               3 Nov 24 13:49 b.txt");
        assert_eq!(
            (e.name.as_slice(), e.kind, e.size),
            (&b"b.txt"[..], FileKind::File, Some(3))
        );
        assert_eq!(e.mtime, civil(2026, 11, 24, 13, 49));
        let e = entry("drwxr-xr-x   2 demo     demo         4096 Jan  3  2024 a dir  with spaces");
        assert_eq!(e.name, b"a dir  with spaces");
        assert_eq!(e.kind, FileKind::Dir);
        assert_eq!(e.mtime, civil(2024, 1, 3, 0, 0));
        // December in November: last year.
        let e = entry("-rw-r--r-- 1 ftp ftp 10 Dec 30 10:00 old");
        assert_eq!(e.mtime, civil(2025, 12, 30, 10, 0));
    }

    #[test]
    fn owner_named_like_a_month_and_leading_spaces() {
        let e = entry("-rw-r--r-- 1 jan may 3 Nov 24 13:49 f");
        assert_eq!((e.name.as_slice(), e.size), (&b"f"[..], Some(3)));
        let e = entry("-rw-r--r-- 1 ftp ftp 3 Nov 24 13:49  two leading");
        assert_eq!(e.name, b" two leading");
    }

    #[test]
    fn symlinks_and_missing_group() {
        let e = entry("lrwxrwxrwx 1 root 7 Nov  1 09:00 link -> target file");
        assert_eq!(e.kind, FileKind::Symlink);
        assert_eq!(e.name, b"link");
        assert_eq!(e.link_target.as_deref(), Some(&b"target file"[..]));
        assert_eq!(e.size, Some(7));
    }

    #[test]
    fn dos_lines() {
        let e = entry("11-24-26  01:49PM       <DIR>          Program Files");
        assert_eq!(
            (e.name.as_slice(), e.kind),
            (&b"Program Files"[..], FileKind::Dir)
        );
        assert_eq!(e.mtime, civil(2026, 11, 24, 13, 49));
        let e = entry("03-05-2025  12:05AM             1234 report.txt\r\n");
        assert_eq!((e.size, e.mtime), (Some(1234), civil(2025, 3, 5, 0, 5)));
    }

    #[test]
    fn non_entries() {
        assert_eq!(parse_list_line(b"total 12", NOW), None);
        assert_eq!(parse_list_line(b"", NOW), None);
        assert_eq!(
            parse_list_line(b"-rw-r--r-- 1 a b 3 Nox 24 13:49 x", NOW),
            None
        );
    }

    #[test]
    fn mlsx_lines() {
        let Some(MlsxLine::Entry(e)) =
            parse_mlsx_line(b"type=file;Size=3;modify=20261124134900.123;perm=r; b c.txt")
        else {
            panic!()
        };
        assert_eq!((e.name.as_slice(), e.size), (&b"b c.txt"[..], Some(3)));
        assert_eq!(e.mtime, civil(2026, 11, 24, 13, 49));
        assert_eq!(
            parse_mlsx_line(b"type=cdir;modify=20261124134900; /pub"),
            Some(MlsxLine::SelfOrParent)
        );
        let Some(MlsxLine::Entry(e)) = parse_mlsx_line(b"Type=DIR;perm=el; sub") else {
            panic!()
        };
        assert_eq!(e.kind, FileKind::Dir);
        let Some(MlsxLine::Entry(e)) = parse_mlsx_line(b"type=OS.unix=slink:/x; l") else {
            panic!()
        };
        assert_eq!(e.kind, FileKind::Symlink);
        assert_eq!(parse_mlsx_line(b"garbage"), None);
    }
}
