//! The client's side of the hash commands: what FEAT says the server offers, which command to
//! ask with, and the digest in its reply.
//!
//! Two forms exist. The draft's `HASH path` answers `213 SHA-256 0-1234 <hex> path` in the
//! algorithm `OPTS HASH` chose, and FEAT lists `HASH SHA-1;SHA-256*;…` with the current choice
//! marked. The older `XSHA256 path` and its kin answer `250 <hex>` (ProFTPD and Wharf) or
//! `213 <hex>`; ProFTPD and Wharf list them in FEAT too, so a client learns of them there.
//!
//! ```
//! use wharf_proto::HashAlgorithm;
//! use wharf_proto::client::hash::{HashCommand, HashFeat, choose};
//!
//! let feat = HashFeat::parse(b" HASH SHA-1;SHA-256*;MD5").unwrap();
//! assert_eq!(feat.selected, Some(HashAlgorithm::Sha256));
//! let how = choose(&feat.offered, &[]).unwrap();
//! assert_eq!(how, HashCommand::Hash(HashAlgorithm::Sha256));
//! // A stronger algorithm by an `X` command wins.
//! let how = choose(&feat.offered, &[HashAlgorithm::Sha512]).unwrap();
//! assert_eq!(how, HashCommand::X(HashAlgorithm::Sha512));
//! ```

use crate::HashAlgorithm;

/// The algorithms a client would rather use, best first: SHA-1 and MD5 are broken for
/// collisions, and CRC32 catches accidents only.
pub const PREFERENCE: [HashAlgorithm; 5] = [
    HashAlgorithm::Sha512,
    HashAlgorithm::Sha256,
    HashAlgorithm::Sha1,
    HashAlgorithm::Md5,
    HashAlgorithm::Crc32,
];

/// An algorithm a careful user is warned about: it cannot tell a deliberate change (MD5) or
/// even every accidental one (CRC32's 32 bits) from the original.
pub fn is_weak(algorithm: HashAlgorithm) -> bool {
    matches!(algorithm, HashAlgorithm::Md5 | HashAlgorithm::Crc32)
}

/// FEAT's HASH line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashFeat {
    /// The algorithms named that this client knows, in the server's order (others skipped).
    pub offered: Vec<HashAlgorithm>,
    /// The one marked `*`: what HASH uses until `OPTS HASH` chooses another.
    pub selected: Option<HashAlgorithm>,
}

impl HashFeat {
    /// Reads one FEAT line (its leading space optional); `None` when it is not the HASH line.
    pub fn parse(line: &[u8]) -> Option<HashFeat> {
        let line = line.trim_ascii();
        let mut split = line.splitn(2, |&b| b == b' ');
        let word = split.next().unwrap_or_default();
        let rest = split.next().unwrap_or_default();
        if !word.eq_ignore_ascii_case(b"HASH") {
            return None;
        }
        let mut feat = HashFeat::default();
        for name in rest.split(|&b| b == b';') {
            let name = name.trim_ascii();
            let (name, star) = match name.strip_suffix(b"*") {
                Some(n) => (n, true),
                None => (name, false),
            };
            let Some(algorithm) = HashAlgorithm::from_name(name) else {
                continue;
            };
            if !feat.offered.contains(&algorithm) {
                feat.offered.push(algorithm);
            }
            if star {
                feat.selected = Some(algorithm);
            }
        }
        Some(feat)
    }
}

/// The `X` verb a FEAT line lists (`XSHA256`, any case), if it is one.
pub fn x_feat(line: &[u8]) -> Option<HashAlgorithm> {
    let word = line.trim_ascii();
    HashAlgorithm::from_x_verb(&word.to_ascii_uppercase())
}

/// How to ask for a file's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCommand {
    /// `OPTS HASH <name>` where needed, then `HASH <path>`.
    Hash(HashAlgorithm),
    /// `XSHA512 <path>` and its kin.
    X(HashAlgorithm),
}

impl HashCommand {
    pub fn algorithm(self) -> HashAlgorithm {
        match self {
            HashCommand::Hash(a) | HashCommand::X(a) => a,
        }
    }

    /// The verb sent with the path.
    pub fn verb(self) -> &'static str {
        match self {
            HashCommand::Hash(_) => "HASH",
            HashCommand::X(a) => a.x_verb(),
        }
    }
}

/// The strongest algorithm offered, by HASH where it offers one as strong as the `X` commands'
/// best (HASH's reply names its algorithm and range, so it is checked more closely), else by
/// an `X` command; `None` when the server offers no hash at all.
pub fn choose(hash: &[HashAlgorithm], x: &[HashAlgorithm]) -> Option<HashCommand> {
    PREFERENCE.into_iter().find_map(|a| {
        if hash.contains(&a) {
            Some(HashCommand::Hash(a))
        } else if x.contains(&a) {
            Some(HashCommand::X(a))
        } else {
            None
        }
    })
}

/// HASH's 213 text: `<ALG> <start>-<end> <hex> <path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashReply {
    pub algorithm: HashAlgorithm,
    pub start: u64,
    pub end: u64,
    pub digest: Vec<u8>,
    /// As the server wrote it (it may hold spaces).
    pub path: Vec<u8>,
}

impl HashReply {
    /// Reads the text after `213 `; `None` when it is not of that form.
    pub fn parse(text: &[u8]) -> Option<HashReply> {
        let mut parts = text.trim_ascii_start().splitn(4, |&b| b == b' ');
        let algorithm = HashAlgorithm::from_name(parts.next()?)?;
        let range = std::str::from_utf8(parts.next()?).ok()?;
        let (start, end) = range.split_once('-')?;
        let digest = parse_hex(parts.next()?)?;
        if digest.len() != algorithm.digest_len() {
            return None;
        }
        let path = parts.next().unwrap_or_default();
        Some(HashReply {
            algorithm,
            start: start.parse().ok()?,
            end: end.parse().ok()?,
            digest,
            path: path.trim_ascii_end().to_vec(),
        })
    }
}

/// An `X` command's text after the code: the digest in hex, in either case, of `algorithm`'s
/// length. Some servers put more words after it; the first word is the digest.
pub fn parse_x_reply(text: &[u8], algorithm: HashAlgorithm) -> Option<Vec<u8>> {
    let word = text.trim_ascii().split(|&b| b == b' ').next()?;
    parse_hex(word).filter(|d| d.len() == algorithm.digest_len())
}

/// Hexadecimal digits, either case, an even number of them; `None` for anything else.
pub fn parse_hex(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 2 != 0 {
        return None;
    }
    let digit = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    text.chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use HashAlgorithm::*;

    #[test]
    fn feat_lines() {
        // line → (offered, selected), or None when not the HASH line
        type Want = Option<(&'static [HashAlgorithm], Option<HashAlgorithm>)>;
        let cases: &[(&[u8], Want)] = &[
            (
                b" HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32",
                Some((&[Sha1, Sha256, Sha512, Md5, Crc32], Some(Sha256))),
            ),
            (b"HASH sha-1*;md5", Some((&[Sha1, Md5], Some(Sha1)))),
            (b" HASH SHA-384;SHA-512*", Some((&[Sha512], Some(Sha512)))),
            (b" HASH SHA-1; SHA-256 ", Some((&[Sha1, Sha256], None))),
            (b" HASH", Some((&[], None))),
            (b" HASHES SHA-1", None),
            (b" MDTM", None),
            (b"", None),
        ];
        for (line, want) in cases {
            let got = HashFeat::parse(line);
            let want = want.map(|(offered, selected)| HashFeat {
                offered: offered.to_vec(),
                selected,
            });
            assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(x_feat(b" XSHA256"), Some(Sha256));
        assert_eq!(x_feat(b" xcrc"), Some(Crc32));
        assert_eq!(x_feat(b" XSHA"), None);
        assert_eq!(x_feat(b" SIZE"), None);
    }

    #[test]
    fn choices() {
        let cases: &[(&[HashAlgorithm], &[HashAlgorithm], Option<HashCommand>)] = &[
            (
                &[Sha1, Sha256, Sha512, Md5, Crc32],
                &[Sha1, Sha256, Sha512],
                Some(HashCommand::Hash(Sha512)),
            ),
            (&[Sha1, Sha256], &[], Some(HashCommand::Hash(Sha256))),
            (&[Md5, Sha1], &[], Some(HashCommand::Hash(Sha1))),
            (&[Sha1], &[Sha256], Some(HashCommand::X(Sha256))),
            (&[], &[Crc32, Md5], Some(HashCommand::X(Md5))),
            (&[Crc32], &[], Some(HashCommand::Hash(Crc32))),
            (&[], &[], None),
        ];
        for (hash, x, want) in cases {
            assert_eq!(choose(hash, x), *want, "{hash:?} {x:?}");
        }
        assert_eq!(HashCommand::X(Sha512).verb(), "XSHA512");
        assert_eq!(HashCommand::Hash(Md5).verb(), "HASH");
        assert!(is_weak(Md5) && is_weak(Crc32) && !is_weak(Sha1));
    }

    #[test]
    fn hash_replies() {
        let abc256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let ok = HashReply::parse(format!("SHA-256 0-3 {abc256} dir/a b.txt").as_bytes());
        let ok = ok.unwrap();
        assert_eq!((ok.algorithm, ok.start, ok.end), (Sha256, 0, 3));
        assert_eq!(ok.digest.len(), 32);
        assert_eq!(ok.digest.first(), Some(&0xba));
        assert_eq!(ok.path, b"dir/a b.txt");
        let upper = HashReply::parse(b"crc32 0-3 352441C2 abc").unwrap();
        assert_eq!(
            (upper.algorithm, upper.digest),
            (Crc32, vec![0x35, 0x24, 0x41, 0xc2])
        );
        let bad: &[&[u8]] = &[
            b"",
            b"SHA-256",
            b"SHA-256 0-3",
            b"SHA-384 0-3 00 f",
            b"CRC32 0-3 352441C f",
            b"CRC32 0-3 352441C2AA f",
            b"CRC32 0-x 352441C2 f",
            b"CRC32 3 352441C2 f",
            b"CRC32 0-3 35244zC2 f",
        ];
        for text in bad {
            assert_eq!(
                HashReply::parse(text),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn x_replies() {
        type Case = (&'static [u8], HashAlgorithm, Option<Vec<u8>>);
        let cases: &[Case] = &[
            (b"352441C2", Crc32, Some(vec![0x35, 0x24, 0x41, 0xc2])),
            (b" 352441c2 \r", Crc32, Some(vec![0x35, 0x24, 0x41, 0xc2])),
            (b"352441C2 abc", Crc32, Some(vec![0x35, 0x24, 0x41, 0xc2])),
            (b"352441C2", Md5, None),
            (b"File not found", Crc32, None),
            (b"", Crc32, None),
        ];
        for (text, algorithm, want) in cases {
            assert_eq!(&parse_x_reply(text, *algorithm), want);
        }
        assert_eq!(parse_hex(b"0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(parse_hex(b"0aF"), None);
        assert_eq!(parse_hex(b"+1"), None);
    }
}
