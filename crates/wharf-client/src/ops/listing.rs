//! What `ls` shows for a path: a directory's entries, those a pattern matches, or one file.

use wharf_proto::entry::{self, Entry, MlsxLine};
use wharf_proto::{FileKind, glob};

use crate::client::{Client, mlst_entry};
use crate::error::Result;
use crate::ops::pattern::{names_no_directory, split_pattern};

/// One entry of a listing, with the MLSx line it came from when facts were asked for and the
/// server has MLSD/MLST (its facts as the server sent them).
#[derive(Debug, Clone)]
pub struct Listed {
    pub entry: Entry,
    pub facts: Option<Vec<u8>>,
}

/// The entries `path` names: a directory's, those a pattern in its last component matches, or
/// a file's own (MLST, when listing it as a directory is refused as no directory; without
/// MLST, LIST of a file already gave its line). With `facts`, entries keep their MLSx line.
pub async fn list(client: &mut Client, path: &[u8], facts: bool) -> Result<Vec<Listed>> {
    let (dir, pattern) = split_pattern(path);
    if let Some(pattern) = pattern {
        let mut all = listing(client, dir, facts).await?;
        all.retain(|l| glob::matches(pattern, &l.entry.name));
        return Ok(all);
    }
    match listing(client, path, facts).await {
        Ok(all) => Ok(all),
        Err(e) if names_no_directory(&e, path) && client.in_step() => {
            match file(client, path, facts).await? {
                Some(one) => Ok(vec![one]),
                None => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// A directory's entries: MLSD lines when facts are wanted and offered, else the parsed
/// listing the session chooses (MLSD or LIST).
async fn listing(client: &mut Client, path: &[u8], facts: bool) -> Result<Vec<Listed>> {
    if facts && client.features().mlst {
        let raw = client.listing("MLSD", path).await?;
        return Ok(raw
            .split(|&b| b == b'\n')
            .filter_map(|line| match entry::parse_mlsx_line(line)? {
                MlsxLine::Entry(entry) => Some(Listed {
                    entry,
                    facts: Some(line.strip_suffix(b"\r").unwrap_or(line).to_vec()),
                }),
                MlsxLine::SelfOrParent => None,
            })
            .collect());
    }
    Ok(client
        .list(path)
        .await?
        .into_iter()
        .map(|entry| Listed { entry, facts: None })
        .collect())
}

/// One file's entry, from MLST (`None` without MLST, or when it is a directory after all).
async fn file(client: &mut Client, path: &[u8], facts: bool) -> Result<Option<Listed>> {
    let Some(line) = client.mlst_line(path).await? else {
        return Ok(None);
    };
    let Some(entry) = mlst_entry(&line).filter(|e| e.kind != FileKind::Dir) else {
        return Ok(None);
    };
    Ok(Some(Listed {
        entry,
        facts: facts.then_some(line),
    }))
}
