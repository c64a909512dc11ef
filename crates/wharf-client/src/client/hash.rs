//! Asking the server for a file's hash: HASH in the algorithm chosen with `OPTS HASH`, or the
//! older `X` command of that algorithm, whichever FEAT offers.

use std::time::Duration;

use wharf_proto::client::ClientCommand;
use wharf_proto::client::hash::{self, HashCommand, HashReply};
use wharf_proto::{HashAlgorithm, Reply};

use super::Client;
use crate::error::{Error, Result};

/// The slowest rate (bytes a second) a server is expected to hash a file at, for the wait
/// for its reply.
const HASH_RATE: u64 = 20 * 1000 * 1000;

impl Client {
    /// How this server is asked for a file's hash: the strongest algorithm that HASH or an `X`
    /// command offers (FEAT), `None` when it offers none.
    pub fn hash_command(&self) -> Option<HashCommand> {
        hash::choose(&self.features.hash.offered, &self.features.x_hash)
    }

    /// The server's hash of `path`, in the strongest algorithm it offers; `None` when it
    /// offers no hash command.
    pub async fn remote_hash(&mut self, path: &[u8]) -> Result<Option<(HashAlgorithm, Vec<u8>)>> {
        let Some(how) = self.hash_command() else {
            return Ok(None);
        };
        let digest = self.hash_with(how, path, None).await?;
        Ok(Some((how.algorithm(), digest)))
    }

    /// The server's hash of the whole of `path` (`len` bytes, when known) by `how`: `OPTS
    /// HASH` first when the session's algorithm is another.
    ///
    /// The server reads the whole file before its one reply, so the wait for it is longer
    /// than the session's timeout: that, plus the time to read `len` bytes at 20 MB/s (a slow
    /// disk, an object store), or ten timeouts when the size is not known.
    pub async fn hash_with(
        &mut self,
        how: HashCommand,
        path: &[u8],
        len: Option<u64>,
    ) -> Result<Vec<u8>> {
        let usual = self.options.timeout;
        self.options.timeout = match len {
            Some(len) => usual + Duration::from_secs(len / HASH_RATE),
            None => usual * 10,
        };
        let result = self.hash_inner(how, path).await;
        self.options.timeout = usual;
        result
    }

    async fn hash_inner(&mut self, how: HashCommand, path: &[u8]) -> Result<Vec<u8>> {
        let algorithm = how.algorithm();
        let not_understood = |verb: &str, reply: &Reply| {
            Error::Protocol(format!(
                "{verb}: reply not understood: {} {}",
                reply.code,
                reply.text()
            ))
        };
        match how {
            HashCommand::Hash(_) => {
                if self.features.hash.selected != Some(algorithm) {
                    self.run_ok(&ClientCommand::OptsHash(algorithm)).await?;
                    self.features.hash.selected = Some(algorithm);
                }
                let reply = self.run_ok(&ClientCommand::Hash(path)).await?;
                let text = reply.lines.last().map_or(&[][..], |l| l);
                let parsed =
                    HashReply::parse(text).ok_or_else(|| not_understood("HASH", &reply))?;
                if parsed.algorithm != algorithm || parsed.start != 0 {
                    return Err(Error::Protocol(format!(
                        "HASH: asked for {} of the whole file, the server answered {} of bytes {}-{}",
                        algorithm.name(),
                        parsed.algorithm.name(),
                        parsed.start,
                        parsed.end
                    )));
                }
                Ok(parsed.digest)
            }
            HashCommand::X(_) => {
                let reply = self.run_ok(&ClientCommand::XHash(algorithm, path)).await?;
                let text = reply.lines.last().map_or(&[][..], |l| l);
                hash::parse_x_reply(text, algorithm)
                    .ok_or_else(|| not_understood(how.verb(), &reply))
            }
        }
    }
}
