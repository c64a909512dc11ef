//! FEAT (RFC 2389), built from what the storage backend can do and the TLS mode.

use crate::HashAlgorithm;
use crate::listing::{self, FactSet};
use crate::reply::{Reply, ReplyCode};

use super::policy::TlsMode;

/// What a storage backend can do beyond reading, writing, listing, creating and removing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Set a file's modification time (MFMT).
    pub set_mtime: bool,
    /// Set permission bits (SITE CHMOD).
    pub chmod: bool,
    /// Write into an existing file at an offset or at its end (REST+STOR, APPE).
    pub append: bool,
    /// Rename in one step, so that nobody sees a half-renamed tree.
    pub atomic_rename: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        set_mtime: true,
        chmod: true,
        append: true,
        atomic_rename: true,
    };
}

/// The FEAT reply: `211-Features:`, one feature a line, `211 End`. `hash`: the session's
/// HASH algorithm, marked `*`.
pub(super) fn feat_reply(
    caps: Capabilities,
    tls: TlsMode,
    facts: FactSet,
    hash: HashAlgorithm,
) -> Reply {
    let tls_on = tls != TlsMode::Off;
    let mut lines = vec![b"Features:".to_vec()];
    let mut add = |on: bool, text: &str| {
        if on {
            lines.push(text.as_bytes().to_vec());
        }
    };
    add(tls_on, " AUTH TLS");
    add(true, " EPRT");
    add(true, " EPSV");
    add(true, &HashAlgorithm::feat_line(hash));
    add(true, " HOST");
    add(true, " MDTM");
    add(caps.set_mtime, " MFMT");
    add(true, &listing::mlst_feat_line(facts));
    add(tls_on, " PBSZ");
    add(tls_on, " PROT");
    add(true, " REST STREAM");
    add(true, " SIZE");
    add(true, " TVFS");
    add(true, " UTF8");
    // The older hash commands are listed too: WinSCP looks for them here (as ProFTPD lists
    // them) before it offers a checksum.
    let mut verbs = HashAlgorithm::ALL.map(HashAlgorithm::x_verb);
    verbs.sort_unstable();
    for verb in verbs {
        lines.push(format!(" {verb}").into_bytes());
    }
    lines.push(b"End".to_vec());
    Reply::multi(ReplyCode::SYSTEM_STATUS, lines)
}

/// SITE HELP.
pub(super) fn site_help(caps: Capabilities) -> Reply {
    let list: &[u8] = if caps.chmod {
        b" CHMOD DIAG HELP"
    } else {
        b" DIAG HELP"
    };
    Reply::multi(
        ReplyCode::HELP,
        vec![b"SITE commands:".to_vec(), list.to_vec(), b"End".to_vec()],
    )
}
