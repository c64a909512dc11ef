//! Virtual paths: what a user sees, rooted at its jail and kept as bytes (names are not always
//! UTF-8 and are never converted lossily).

use std::fmt;

/// Why a path from the client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// `..` would climb above the user's root.
    #[error("path climbs above the root")]
    EscapesRoot,
    /// A NUL byte: no file system name can hold one.
    #[error("path contains a NUL byte")]
    Nul,
    #[error("empty path")]
    Empty,
}

/// A normalised absolute path inside a user's root: no `.`, no `..`, no empty components.
/// `/` is the root itself. Stored as its components' bytes.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct VPath {
    components: Vec<Vec<u8>>,
}

impl VPath {
    /// The user's root, `/`.
    pub fn root() -> VPath {
        VPath::default()
    }

    /// Resolves a client's path argument against the current directory `self`.
    /// An absolute argument starts from the root; `..` above the root is refused rather than
    /// clamped, so that a client probing for an escape gets a clear 550.
    pub fn join(&self, arg: &[u8]) -> Result<VPath, PathError> {
        if arg.is_empty() {
            return Err(PathError::Empty);
        }
        if arg.contains(&0) {
            return Err(PathError::Nul);
        }
        let mut components = if arg.first() == Some(&b'/') {
            Vec::new()
        } else {
            self.components.clone()
        };
        for part in arg.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    components.pop().ok_or(PathError::EscapesRoot)?;
                }
                name => components.push(name.to_vec()),
            }
        }
        Ok(VPath { components })
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.components.last().map(Vec::as_slice)
    }

    /// The parent directory (the root's parent is the root).
    pub fn parent(&self) -> VPath {
        let mut components = self.components.clone();
        components.pop();
        VPath { components }
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.components.iter().map(Vec::as_slice)
    }

    /// The path relative to the root, as bytes without a leading slash (`.` for the root): the
    /// form handed to `openat2` beneath the root directory.
    pub fn relative(&self) -> Vec<u8> {
        if self.components.is_empty() {
            return b".".to_vec();
        }
        self.components.join(&b'/')
    }

    /// The absolute form the client sees: `/a/b`.
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.components.is_empty() {
            return b"/".to_vec();
        }
        let mut out = Vec::new();
        for c in &self.components {
            out.push(b'/');
            out.extend_from_slice(c);
        }
        out
    }
}

impl fmt::Debug for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> VPath {
        VPath::root().join(s.as_bytes()).unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(p("/a/./b//c/").to_bytes(), b"/a/b/c");
        assert_eq!(p("a/b/../c").to_bytes(), b"/a/c");
        assert_eq!(p("/").to_bytes(), b"/");
        assert_eq!(p("/").relative(), b".");
        assert_eq!(p("/a/b").relative(), b"a/b");
        assert_eq!(p("/a/b").join(b"..").unwrap().to_bytes(), b"/a");
        assert_eq!(p("/a/b").join(b"/x").unwrap().to_bytes(), b"/x");
        assert_eq!(p("/a/b").join(b"c").unwrap().to_bytes(), b"/a/b/c");
    }

    #[test]
    fn refuses_escape_nul_and_empty() {
        assert_eq!(VPath::root().join(b".."), Err(PathError::EscapesRoot));
        assert_eq!(
            VPath::root().join(b"../../etc/passwd"),
            Err(PathError::EscapesRoot)
        );
        assert_eq!(p("/a").join(b"../.."), Err(PathError::EscapesRoot));
        assert_eq!(
            VPath::root().join(b"/a/../../b"),
            Err(PathError::EscapesRoot)
        );
        assert_eq!(VPath::root().join(b"a\0b"), Err(PathError::Nul));
        assert_eq!(VPath::root().join(b""), Err(PathError::Empty));
    }

    #[test]
    fn keeps_non_utf8_bytes() {
        let v = VPath::root().join(b"caf\xe9/\xff").unwrap();
        assert_eq!(v.to_bytes(), b"/caf\xe9/\xff");
        assert_eq!(v.file_name(), Some(&b"\xff"[..]));
        assert_eq!(v.parent().to_bytes(), b"/caf\xe9");
    }
}
