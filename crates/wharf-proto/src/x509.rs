//! Just enough X.509 (DER) to tell a user about a certificate: subject, issuer and validity.
//! Verification is rustls's and webpki's job; this only reads, and never panics on bad input.

use crate::UtcTime;

/// What `wharf check --tls` shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// `CN=…, O=…` (the attributes people recognise, in the certificate's order).
    pub subject: String,
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// Reads the summary of a DER certificate; `None` when it is not one this reader understands.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (cert, _) = read_tlv(der, 0x30)?;
    let (tbs, _) = read_tlv(cert, 0x30)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = read_tlv(rest, 0xa0)?.1;
    }
    let (_serial, r) = read_tlv(rest, 0x02)?;
    let (_sig_alg, r) = read_tlv(r, 0x30)?;
    let (issuer, r) = read_tlv(r, 0x30)?;
    let (validity, r) = read_tlv(r, 0x30)?;
    let (subject, _) = read_tlv(r, 0x30)?;
    let (not_before, v) = read_time(validity)?;
    let (not_after, _) = read_time(v)?;
    Some(CertSummary {
        subject: name_text(subject),
        issuer: name_text(issuer),
        not_before,
        not_after,
    })
}

/// One tag-length-value with the expected tag: (its contents, what follows it).
fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    read_len_value(rest)
}

/// Any tag: (tag, contents, what follows).
fn read_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    let (value, after) = read_len_value(rest)?;
    Some((t, value, after))
}

fn read_len_value(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest.get(n..)?)
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) as Unix seconds.
fn read_time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, value, rest) = read_any(input)?;
    let digits = value.strip_suffix(b"Z")?;
    let full: Vec<u8> = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = std::str::from_utf8(digits.get(..2)?)
                .ok()?
                .parse::<u8>()
                .ok()?;
            let century: &[u8] = if yy >= 50 { b"19" } else { b"20" };
            [century, digits].concat()
        }
        (0x18, 14) => digits.to_vec(),
        _ => return None,
    };
    Some((UtcTime::parse_timeval(&full)?.to_unix(), rest))
}

/// A Name (RDNSequence) as `CN=…, O=…`, with the common attributes only.
fn name_text(mut name: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some((0x31, set, rest)) = read_any(name) {
        name = rest;
        let mut set = set;
        while let Some((0x30, attr, more)) = read_any(set) {
            set = more;
            let Some((0x06, oid, value)) = read_any(attr) else {
                continue;
            };
            let label = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                [0x55, 0x04, 0x06] => "C",
                _ => continue,
            };
            if let Some((_, text, _)) = read_any(value) {
                parts.push(format!("{label}={}", String::from_utf8_lossy(text)));
            }
        }
    }
    if parts.is_empty() {
        "(no name)".into()
    } else {
        parts.join(", ")
    }
}

/// A Unix time as `YYYY-MM-DD`.
pub fn date(unix: i64) -> String {
    let t = UtcTime::from_unix(unix).to_timeval();
    match (t.get(..4), t.get(4..6), t.get(6..8)) {
        (Some(y), Some(m), Some(d)) => format!("{y}-{m}-{d}"),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_none() {
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(summarize(&[0x30, 0x03, 0x30, 0x01]), None);
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let _ = summarize(&junk);
        }
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_000_000), "2026-11-18");
    }
}
