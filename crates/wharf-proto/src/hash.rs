//! The hash algorithms of the HASH command (draft-bryan-ftpext-hash) and of the older `X`
//! commands (`XSHA256 path [start end]` and its kin) that clients such as WinSCP send: their
//! names on the wire, the FEAT line, and the digest's text in each reply form.
//!
//! The reply forms follow what ProFTPD 1.3.8's mod_digest answered when asked by hand (Python's
//! ftplib, `sendcmd`, a 12-byte `a.txt`):
//! - `HASH a.txt` → `213-Computing SHA-1 digest` then `213 SHA-1 0-12 22596363…d511 a.txt`: the
//!   range's end is the file's length (exclusive), the digest in lower case, the path as sent;
//! - `OPTS HASH` → `200 SHA-1` (its default); `OPTS HASH MD5` → `200 MD5`; `OPTS HASH FOO` →
//!   `501 FOO: Unsupported algorithm`;
//! - `XSHA256 a.txt` → `250-Computing SHA256 digest` then `250 A948904F…A447`: code 250, upper
//!   case, the digest alone; `XSHA256 a.txt 0 5` → the digest of the first five bytes;
//!   `XMD5 a.txt 12` → `501 Invalid number of parameters`; `XMD5 a.txt 5 2` and `… 0 0` → 501
//!   (the end must lie after the start); `XMD5 a.txt 13 13` → `501 XMD5: end exceeds file size`;
//! - a missing file → 550; a directory → 553 for HASH, 550 for the X commands.
//!
//! Wharf sends the final line only (the `Computing` line carries nothing a client reads), 550
//! for a directory as RETR does, SHA-256 by default, and 250 for the X commands as ProFTPD does
//! (the issue asked for 213 "as ProFTPD does"; ProFTPD 1.3.8 answers 250, so Wharf does too,
//! and a client tuned on ProFTPD sees what it knows).

/// An algorithm a client may ask the server to hash a file with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
    Sha512,
    Md5,
    Crc32,
}

impl HashAlgorithm {
    /// In the order FEAT lists them.
    pub const ALL: [HashAlgorithm; 5] = [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha512,
        HashAlgorithm::Md5,
        HashAlgorithm::Crc32,
    ];

    /// What a session uses until `OPTS HASH` chooses another: SHA-1 is no longer collision
    /// resistant, and SHA-256 is what clients ask for first.
    pub const DEFAULT: HashAlgorithm = HashAlgorithm::Sha256;

    /// The name in HASH's reply, OPTS HASH and FEAT (the draft's, from IANA's textual names).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha512 => "SHA-512",
            HashAlgorithm::Md5 => "MD5",
            HashAlgorithm::Crc32 => "CRC32",
        }
    }

    /// A name as `OPTS HASH` gives it, in any case.
    pub fn from_name(name: &[u8]) -> Option<HashAlgorithm> {
        HashAlgorithm::ALL
            .into_iter()
            .find(|a| a.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The `X` command that hashes with this algorithm.
    pub fn x_verb(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "XSHA1",
            HashAlgorithm::Sha256 => "XSHA256",
            HashAlgorithm::Sha512 => "XSHA512",
            HashAlgorithm::Md5 => "XMD5",
            HashAlgorithm::Crc32 => "XCRC",
        }
    }

    /// The algorithm of an `X` verb (upper case, as the parser has it).
    pub fn from_x_verb(verb: &[u8]) -> Option<HashAlgorithm> {
        HashAlgorithm::ALL
            .into_iter()
            .find(|a| a.x_verb().as_bytes() == verb)
    }

    /// The digest's length in bytes (CRC32's value is four bytes, most significant first).
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
            HashAlgorithm::Crc32 => 4,
        }
    }

    /// FEAT's line (RFC 2389 form, a leading space): every algorithm, the session's `chosen`
    /// one marked `*`.
    pub fn feat_line(chosen: HashAlgorithm) -> String {
        let names: Vec<String> = HashAlgorithm::ALL
            .into_iter()
            .map(|a| {
                let star = if a == chosen { "*" } else { "" };
                format!("{}{star}", a.name())
            })
            .collect();
        format!(" HASH {}", names.join(";"))
    }
}

/// A digest as hexadecimal text: lower case in HASH's reply (as the draft's examples and
/// `sha256sum` write it), upper case in the `X` commands' (as ProFTPD writes them).
pub fn hex(digest: &[u8], upper: bool) -> String {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let digits = if upper { UPPER } else { LOWER };
    let mut out = String::with_capacity(digest.len() * 2);
    for &b in digest {
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for a in HashAlgorithm::ALL {
            assert_eq!(HashAlgorithm::from_name(a.name().as_bytes()), Some(a));
            let lower = a.name().to_ascii_lowercase();
            assert_eq!(HashAlgorithm::from_name(lower.as_bytes()), Some(a));
            assert_eq!(HashAlgorithm::from_x_verb(a.x_verb().as_bytes()), Some(a));
        }
        assert_eq!(HashAlgorithm::from_name(b"SHA-384"), None);
        assert_eq!(HashAlgorithm::from_name(b""), None);
        assert_eq!(HashAlgorithm::from_x_verb(b"XSHA"), None);
    }

    #[test]
    fn feat_line_marks_the_choice() {
        assert_eq!(
            HashAlgorithm::feat_line(HashAlgorithm::DEFAULT),
            " HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32"
        );
        assert_eq!(
            HashAlgorithm::feat_line(HashAlgorithm::Crc32),
            " HASH SHA-1;SHA-256;SHA-512;MD5;CRC32*"
        );
    }

    #[test]
    fn hex_in_both_cases() {
        assert_eq!(hex(&[0xaf, 0x08, 0x3b, 0x2d], false), "af083b2d");
        assert_eq!(hex(&[0xaf, 0x08, 0x3b, 0x2d], true), "AF083B2D");
        assert_eq!(hex(&[], true), "");
    }
}
