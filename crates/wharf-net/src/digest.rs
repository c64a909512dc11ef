//! A running digest in each algorithm of HASH and the `X` commands, fed as bytes move, so a
//! client can check a transfer against the server's hash without reading the file again.
//!
//! The same crates as the server's hasher, so both ends compute alike: ring for SHA-256 and
//! SHA-512, the `sha1` crate for SHA-1 (it uses the CPU's SHA instructions, ring's legacy SHA-1
//! does not), `md-5`, and `crc` with the slice-by-16 table.
//!
//! ```
//! use wharf_net::digest::Digest;
//! use wharf_proto::HashAlgorithm;
//! let mut d = Digest::new(HashAlgorithm::Crc32);
//! d.update(b"hello ");
//! d.update(b"world\n");
//! assert_eq!(d.finish(), [0xaf, 0x08, 0x3b, 0x2d]);
//! ```

use md5::Digest as _;
use wharf_proto::HashAlgorithm;

/// CRC-32 as zlib, `cksum -a crc32b` and ProFTPD compute it.
static CRC32: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// One running digest. The states are boxed: they differ much in size (a CRC is four bytes,
/// SHA-512's state over two hundred), and one lives per file.
pub struct Digest {
    algorithm: HashAlgorithm,
    state: State,
}

enum State {
    Ring(Box<ring::digest::Context>),
    Sha1(Box<sha1::Sha1>),
    Md5(Box<md5::Md5>),
    Crc32(crc::Digest<'static, u32, crc::Table<16>>),
}

impl Digest {
    pub fn new(algorithm: HashAlgorithm) -> Digest {
        let ring = |a| State::Ring(Box::new(ring::digest::Context::new(a)));
        let state = match algorithm {
            HashAlgorithm::Sha1 => State::Sha1(Box::default()),
            HashAlgorithm::Sha256 => ring(&ring::digest::SHA256),
            HashAlgorithm::Sha512 => ring(&ring::digest::SHA512),
            HashAlgorithm::Md5 => State::Md5(Box::default()),
            HashAlgorithm::Crc32 => State::Crc32(CRC32.digest()),
        };
        Digest { algorithm, state }
    }

    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Ring(c) => c.update(bytes),
            State::Sha1(s) => s.update(bytes),
            State::Md5(m) => m.update(bytes),
            State::Crc32(c) => c.update(bytes),
        }
    }

    /// The digest: [`HashAlgorithm::digest_len`] bytes (CRC32's value most significant first,
    /// as its hex is written).
    pub fn finish(self) -> Vec<u8> {
        match self.state {
            State::Ring(c) => c.finish().as_ref().to_vec(),
            State::Sha1(s) => s.finalize().to_vec(),
            State::Md5(m) => m.finalize().to_vec(),
            State::Crc32(c) => c.finalize().to_be_bytes().to_vec(),
        }
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_proto::hash::hex;

    /// Known answers for "" and "abc" (FIPS 180 examples; RFC 1321; zlib's crc32).
    const ANSWERS: &[(HashAlgorithm, &str, &str)] = &[
        (
            HashAlgorithm::Sha1,
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "a9993e364706816aba3e25717850c26c9cd0d89d",
        ),
        (
            HashAlgorithm::Sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            HashAlgorithm::Sha512,
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
        (
            HashAlgorithm::Md5,
            "d41d8cd98f00b204e9800998ecf8427e",
            "900150983cd24fb0d6963f7d28e17f72",
        ),
        (HashAlgorithm::Crc32, "00000000", "352441c2"),
    ];

    #[test]
    fn known_answers() {
        for &(algorithm, empty, abc) in ANSWERS {
            let d = Digest::new(algorithm);
            assert_eq!(d.algorithm(), algorithm);
            let got = d.finish();
            assert_eq!(got.len(), algorithm.digest_len(), "{algorithm:?}");
            assert_eq!(hex(&got, false), empty, "{algorithm:?} of \"\"");
            // Fed in pieces, as a transfer feeds it.
            let mut d = Digest::new(algorithm);
            for piece in [&b"a"[..], b"", b"bc"] {
                d.update(piece);
            }
            assert_eq!(hex(&d.finish(), false), abc, "{algorithm:?} of \"abc\"");
        }
    }
}
