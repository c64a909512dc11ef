//! Shell-style patterns in the last component of a LIST or NLST argument (`mget f00*.dat` sends
//! `NLST f00*.dat`): `*`, `?` and `[...]` (ranges, `!` or `^` to negate). Names and patterns
//! are bytes; a pattern never spans a `/`, so it only ever picks names from one directory.

/// Whether `component` has a pattern character.
pub fn is_pattern(component: &[u8]) -> bool {
    component.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Whether `name` matches `pattern`. A leading `.` is matched only by a pattern that starts with
/// one (as in the shell: `*` does not list hidden files).
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    // Iterative matching with one backtrack point for the last `*`: linear in practice, and no
    // recursion a hostile pattern could deepen.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((hit, next)) = class(pattern, p, name.get(n).copied().unwrap_or(0)) {
                    if hit {
                        p = next;
                        n += 1;
                        continue;
                    }
                } else if name.get(n) == Some(&b'[') {
                    // An unclosed `[` is a plain character.
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if name.get(n) == Some(&c) => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

/// The bracket expression at `pattern[start]` (a `[`): whether `c` is in it, and where the
/// pattern goes on. `None` if the bracket is not closed.
fn class(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let hi = *pattern.get(i + 2)?;
            if b <= c && c <= hi {
                hit = true;
            }
            i += 3;
        } else {
            if b == c {
                hit = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_questions_and_classes() {
        assert!(matches(b"f00*.dat", b"f001.dat"));
        assert!(matches(b"f00*.dat", b"f00.dat"));
        assert!(!matches(b"f00*.dat", b"f001.txt"));
        assert!(matches(b"*", b"anything"));
        assert!(
            !matches(b"*", b".hidden"),
            "hidden files need a leading dot"
        );
        assert!(matches(b".*", b".hidden"));
        assert!(matches(b"a?c", b"abc"));
        assert!(!matches(b"a?c", b"ac"));
        assert!(matches(b"[a-c]x", b"bx"));
        assert!(!matches(b"[!a-c]x", b"bx"));
        assert!(matches(b"[^a-c]x", b"dx"));
        assert!(matches(b"[]]", b"]"));
        assert!(matches(b"a[", b"a["), "an unclosed bracket is literal");
        assert!(matches(b"*a*b*c", b"xxaxxbxxc"));
        assert!(!matches(b"*a*b*c", b"xxaxxbxx"));
        assert!(
            matches(b"caf\xe9*", b"caf\xe9-\xff.bin"),
            "bytes, not UTF-8"
        );
        assert!(is_pattern(b"x*") && is_pattern(b"[a]") && !is_pattern(b"plain.txt"));
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let name = vec![b'a'; 4000];
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b".to_vec();
        // One backtrack point: at most name × pattern steps, never exponential.
        assert!(!matches(&pattern, &name));
    }
}
