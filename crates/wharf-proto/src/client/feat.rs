//! What a client reads out of replies: the FEAT list (RFC 2389) and the quoted path of a 257
//! (RFC 959).

use super::hash::{self, HashFeat};
use crate::HashAlgorithm;
use crate::reply::Reply;

/// What the server announced in its FEAT reply (RFC 2389) that the client uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub mlst: bool,
    pub rest_stream: bool,
    pub size: bool,
    pub mdtm: bool,
    pub utf8: bool,
    pub epsv: bool,
    /// The HASH line: its algorithms and the one selected.
    pub hash: HashFeat,
    /// The `X` hash commands listed (`XSHA256` and its kin), as ProFTPD and Wharf list them.
    pub x_hash: Vec<HashAlgorithm>,
}

impl Features {
    /// The features of a FEAT reply. Servers differ in case and spacing, so the words are
    /// compared without either; a reply of one line lists nothing.
    pub fn parse(reply: &Reply) -> Features {
        let mut f = Features::default();
        for line in feature_lines(reply) {
            if let Some(hash) = HashFeat::parse(line) {
                f.hash = hash;
                continue;
            }
            if let Some(x) = hash::x_feat(line) {
                f.x_hash.push(x);
                continue;
            }
            let text = String::from_utf8_lossy(line).to_ascii_uppercase();
            let mut words = text.split_whitespace();
            match words.next() {
                Some("MLST") => f.mlst = true,
                Some("REST") => f.rest_stream |= words.next() == Some("STREAM"),
                Some("SIZE") => f.size = true,
                Some("MDTM") => f.mdtm = true,
                Some("UTF8") => f.utf8 = true,
                Some("EPSV") => f.epsv = true,
                _ => {}
            }
        }
        f
    }

    /// Whether a FEAT reply lists `feature` (the first word of a line, in any case).
    pub fn lists(reply: &Reply, feature: &str) -> bool {
        feature_lines(reply).any(|line| {
            String::from_utf8_lossy(line)
                .split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(feature))
        })
    }
}

/// The lines between `211-Features:` and the end line, which carry one feature each.
fn feature_lines(reply: &Reply) -> impl Iterator<Item = &Vec<u8>> {
    let n = reply.lines.len();
    reply.lines.iter().take(n.saturating_sub(1)).skip(1)
}

/// The path of a 257 reply (PWD, MKD): the text between the first quote and the next one that
/// is not doubled, a doubled quote standing for one. `None` when the quotes are not there.
pub fn parse_257(text: &[u8]) -> Option<Vec<u8>> {
    let start = text.iter().position(|&b| b == b'"')? + 1;
    let mut out = Vec::new();
    let mut i = start;
    while let Some(&b) = text.get(i) {
        if b == b'"' {
            if text.get(i + 1) == Some(&b'"') {
                out.push(b'"');
                i += 2;
                continue;
            }
            return Some(out);
        }
        out.push(b);
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{ReplyCode, ReplyParser};

    /// The reply as a client parser reads it off the wire.
    fn reply(wire: &str) -> Reply {
        let mut p = ReplyParser::new();
        p.feed(wire.as_bytes());
        p.next_reply().unwrap().unwrap()
    }

    #[test]
    fn feat_forms() {
        let all = Features {
            mlst: true,
            rest_stream: true,
            size: true,
            mdtm: true,
            utf8: true,
            epsv: true,
            ..Features::default()
        };
        let rows: &[(&str, Features)] = &[
            (
                "211-Features:\r\n MLST type*;size*;modify*;\r\n REST STREAM\r\n SIZE\r\n \
                 MDTM\r\n UTF8\r\n EPSV\r\n211 End\r\n",
                all.clone(),
            ),
            // Lower case, no leading space, spaces around.
            (
                "211-features\r\nmlst type*;\r\n  rest stream  \r\nsize\r\n mdtm\r\n utf8\r\n \
                 epsv\r\n211 end\r\n",
                all,
            ),
            // REST without STREAM is not the REST a resume needs.
            (
                "211-Features:\r\n REST\r\n SIZE\r\n211 End\r\n",
                Features {
                    size: true,
                    ..Features::default()
                },
            ),
            // AUTH TLS and features the client does not use change nothing.
            (
                "211-Extensions supported:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n CLNT\r\n \
                 MLSD\r\n211 End.\r\n",
                Features::default(),
            ),
            // A feature on the end line is not in the list (RFC 2389: the end line is not one).
            (
                "211-Features:\r\n SIZE\r\n211 MDTM\r\n",
                Features {
                    size: true,
                    ..Features::default()
                },
            ),
            // A one-line reply: no features.
            ("211 No features\r\n", Features::default()),
            ("211-Features:\r\n211 End\r\n", Features::default()),
        ];
        for (wire, want) in rows {
            assert_eq!(Features::parse(&reply(wire)), *want, "{wire:?}");
        }
    }

    #[test]
    fn feat_lists() {
        let feat = reply("211-Features:\r\n AUTH TLS\r\n host\r\n MLST type*;\r\n211 End\r\n");
        assert!(Features::lists(&feat, "HOST"));
        assert!(Features::lists(&feat, "AUTH"));
        assert!(Features::lists(&feat, "mlst"));
        assert!(!Features::lists(&feat, "TLS"));
        assert!(!Features::lists(&feat, "End"));
        assert!(!Features::lists(&feat, "Features:"));
        let single = Reply::new(ReplyCode::SYSTEM_STATUS, "HOST");
        assert!(!Features::lists(&single, "HOST"));
    }

    #[test]
    fn paths_of_257() {
        let rows: &[(&[u8], Option<&[u8]>)] = &[
            (b"\"/\" is current directory.", Some(b"/")),
            (b"\"/a\"\"b\" is current", Some(b"/a\"b")),
            (b"\"\"\"\"\"\" created", Some(b"\"\"")),
            (b"\"/with space/x\" created", Some(b"/with space/x")),
            (b"MKD command successful: \"/new\"", Some(b"/new")),
            (b"\"\" is current", Some(b"")),
            (b"\"/caf\xe9\" ok", Some(b"/caf\xe9")),
            (b"no quotes", None),
            (b"\"/unterminated", None),
            (b"\"/ends in a doubled quote\"\"", None),
            (b"", None),
        ];
        for (text, want) in rows {
            assert_eq!(
                parse_257(text).as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn feat_hash_lines() {
        use HashAlgorithm::*;
        // FEAT's lines → (HASH's algorithms, its selected one, X verbs) and the command chosen
        type Case = (
            &'static [&'static [u8]],
            &'static [HashAlgorithm],
            Option<HashAlgorithm>,
            &'static [HashAlgorithm],
            Option<super::hash::HashCommand>,
        );
        let cases: &[Case] = &[
            // Wharf
            (
                &[
                    b" HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32",
                    b" XCRC",
                    b" XMD5",
                    b" XSHA1",
                    b" XSHA256",
                    b" XSHA512",
                ],
                &[Sha1, Sha256, Sha512, Md5, Crc32],
                Some(Sha256),
                &[Crc32, Md5, Sha1, Sha256, Sha512],
                Some(super::hash::HashCommand::Hash(Sha512)),
            ),
            // ProFTPD's mod_digest
            (
                &[
                    b" HASH SHA-1*;SHA-256;SHA-512;MD5;CRC32",
                    b" XCRC",
                    b" XMD5",
                    b" XSHA",
                    b" XSHA1",
                    b" XSHA256",
                    b" XSHA512",
                ],
                &[Sha1, Sha256, Sha512, Md5, Crc32],
                Some(Sha1),
                &[Crc32, Md5, Sha1, Sha256, Sha512],
                Some(super::hash::HashCommand::Hash(Sha512)),
            ),
            // Only the older commands, and weak ones
            (
                &[b" XMD5", b" XCRC"],
                &[],
                None,
                &[Md5, Crc32],
                Some(super::hash::HashCommand::X(Md5)),
            ),
            // vsftpd: none
            (&[b" EPSV", b" SIZE"], &[], None, &[], None),
        ];
        for (lines, offered, selected, x, chosen) in cases {
            let mut all = vec![b"Features:".to_vec()];
            all.extend(lines.iter().map(|l| l.to_vec()));
            all.push(b"End".to_vec());
            let f = Features::parse(&Reply::multi(ReplyCode::SYSTEM_STATUS, all));
            assert_eq!(f.hash.offered, *offered, "{lines:?}");
            assert_eq!(f.hash.selected, *selected, "{lines:?}");
            assert_eq!(f.x_hash, *x, "{lines:?}");
            assert_eq!(
                super::hash::choose(&f.hash.offered, &f.x_hash),
                *chosen,
                "{lines:?}"
            );
        }
    }
}
