//! UTC calendar arithmetic for MDTM, MFMT, MLSx and LIST dates, without a clock (the caller
//! passes the time) and without a date crate.

/// A UTC date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// From seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> UtcTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// `YYYYMMDDHHMMSS`, the RFC 3659 time-val.
    pub fn to_timeval(self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Parses an RFC 3659 time-val `YYYYMMDDHHMMSS[.sss]` (fraction ignored).
    pub fn parse_timeval(text: &[u8]) -> Option<UtcTime> {
        let main = match text.iter().position(|&b| b == b'.') {
            Some(dot) => {
                let frac = text.get(dot + 1..)?;
                if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                text.get(..dot)?
            }
            None => text,
        };
        if main.len() != 14 || !main.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> u32 {
            main[r].iter().fold(0, |a, d| a * 10 + u32::from(d - b'0'))
        };
        let t = UtcTime {
            year: i64::from(num(0..4)),
            month: num(4..6),
            day: num(6..8),
            hour: num(8..10),
            minute: num(10..12),
            second: num(12..14),
        };
        let valid = (1..=12).contains(&t.month)
            && t.day >= 1
            && t.day <= days_in_month(t.year, t.month)
            && t.hour < 24
            && t.minute < 60
            && t.second < 61;
        valid.then_some(t)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(UtcTime::from_unix(0).to_timeval(), "19700101000000");
        assert_eq!(
            UtcTime::from_unix(951_782_400).to_timeval(),
            "20000229000000"
        );
        assert_eq!(
            UtcTime::from_unix(1795478399).to_timeval(),
            "20261123235959"
        );
        assert_eq!(UtcTime::from_unix(-1).to_timeval(), "19691231235959");
    }

    #[test]
    fn round_trip() {
        for secs in [
            0,
            1,
            86_399,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            -86_401,
        ] {
            assert_eq!(UtcTime::from_unix(secs).to_unix(), secs);
        }
    }

    #[test]
    fn parse_timeval() {
        let t = UtcTime::parse_timeval(b"20240229123456").unwrap();
        assert_eq!(t.to_timeval(), "20240229123456");
        assert!(UtcTime::parse_timeval(b"20240229123456.123").is_some());
        assert!(UtcTime::parse_timeval(b"20230229123456").is_none());
        assert!(UtcTime::parse_timeval(b"2023022912345").is_none());
        assert!(UtcTime::parse_timeval(b"20231301000000").is_none());
        assert!(UtcTime::parse_timeval(b"20230101000000.").is_none());
    }
}
