//! Everything a peer can send goes through these parsers; none may panic, whatever the bytes.
//! A deterministic generator stands in for a fuzzer here (no extra toolchain needed), biased
//! towards the bytes that matter: digits, separators, CR/LF, IAC, NUL, and known verbs.

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"USER ",
            b"PORT ",
            b"EPRT ",
            b"EPSV ",
            b"TYPE ",
            b"REST ",
            b"MFMT ",
            b"SITE CHMOD ",
            b"OPTS ",
            b"LIST -",
            b"|",
            b",",
            b"(",
            b")",
            b"..",
            b"/",
            b"\r\n",
            b"\n",
            b"\r",
            b"\xff",
            b"\xff\xf4",
            b"\xff\xfb",
            b"\0",
            b"255",
            b"65536",
            b"99999999999999999999",
            b"20241301",
            b" ",
            b"-",
            b"ALL",
            b"2",
            b"1",
            b"type=",
            b";",
            b"=",
            b"Nov",
            b"12:30",
            b"01:49PM",
            b"<DIR>",
            b" -> ",
            b"drwxr-xr-x",
        ];
        let len = (self.next() % max as u64) as usize;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.next() % 3 == 0 {
                out.extend_from_slice(PIECES[(self.next() % PIECES.len() as u64) as usize]);
            } else {
                out.push(self.next() as u8);
            }
        }
        out
    }
}

#[test]
fn parsers_never_panic() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    for _ in 0..100_000 {
        let input = g.bytes(64);
        crate::fuzz::command(&input);
        crate::fuzz::reply(&input);
        crate::fuzz::hostport(&input);
        crate::fuzz::list(&input);
        crate::fuzz::proxy(&input);
    }
    // Headers that start right, then go wrong anywhere.
    for _ in 0..5_000 {
        let mut input = if g.next() % 2 == 0 {
            crate::proxy::V2_SIGNATURE.to_vec()
        } else {
            b"PROXY ".to_vec()
        };
        input.extend(g.bytes(120));
        crate::fuzz::proxy(&input);
    }
}

/// A whole server session under random commands, random outcomes of its actions and random
/// time: it never panics, and whatever it is fed, it asks for at most one action at a time.
#[test]
fn a_session_never_panics() {
    let mut g = Gen(0x2545_F491_4F6C_DD1D);
    for _ in 0..300 {
        let mut data = Vec::new();
        while data.len() < 3000 {
            data.extend_from_slice(&g.bytes(32));
            data.push((g.next() % 256) as u8);
        }
        crate::fuzz::session(&data);
    }
}

/// The fuzzers' seed corpus (`fuzz/corpus/TARGET/`), each file as it is and under a few
/// thousand mutations (bytes flipped, inserted, cut, pieces spliced in): what a short fuzzing
/// run does, on the stable toolchain.
#[test]
fn the_seed_corpus_and_its_mutations_never_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 5] = [
        ("command", crate::fuzz::command),
        ("reply", crate::fuzz::reply),
        ("hostport", crate::fuzz::hostport),
        ("list", crate::fuzz::list),
        ("session", crate::fuzz::session),
    ];
    let mut g = Gen(0xD1B5_4A32_D192_ED03);
    for (target, run) in targets {
        let dir = root.join(target);
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.expect("entry").path()).expect("seed"))
            .collect();
        assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
        for seed in &seeds {
            run(seed);
            for _ in 0..(if target == "session" { 200 } else { 2000 }) {
                let mut m = seed.clone();
                for _ in 0..=(g.next() % 4) {
                    let at = (g.next() as usize) % (m.len() + 1);
                    match g.next() % 4 {
                        0 if at < m.len() => m[at] ^= 1 << (g.next() % 8),
                        1 => {
                            let piece = g.bytes(8);
                            m.splice(at..at, piece);
                        }
                        2 if at < m.len() => {
                            let end = (at + (g.next() as usize) % 8).min(m.len());
                            m.drain(at..end);
                        }
                        _ => {
                            let other = &seeds[(g.next() as usize) % seeds.len()];
                            let from = (g.next() as usize) % (other.len() + 1);
                            m.splice(at..at, other[from..].iter().copied().take(16));
                        }
                    }
                }
                run(&m);
            }
        }
    }
}
