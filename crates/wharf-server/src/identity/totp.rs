//! One-time codes (TOTP, RFC 6238): HMAC-SHA1, 30-second steps, six digits — what every
//! authenticator app makes from an `otpauth://` URI. The code is typed after the password
//! (`secret123456`), so that every FTP client can send it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Seconds a code lasts.
pub const STEP: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Steps either side of now that are still accepted (clock skew).
pub const SKEW: u64 = 1;

/// A TOTP secret: raw bytes, kept and shown as base32 (RFC 4648, no padding).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A new random secret of 20 bytes (160 bits, as RFC 4226 recommends).
    pub fn generate() -> Result<TotpSecret, String> {
        let mut bytes = vec![0u8; 20];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
        Ok(TotpSecret(bytes))
    }

    /// From base32 as apps and databases show it: case, spaces and `=` padding do not matter;
    /// at least 10 bytes (80 bits).
    pub fn parse(text: &str) -> Result<TotpSecret, String> {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(clean.as_bytes())
            .map_err(|_| "a TOTP secret is base32 (A-Z, 2-7)".to_string())?;
        if bytes.len() < 10 {
            return Err("a TOTP secret needs at least 16 base32 characters (80 bits)".into());
        }
        Ok(TotpSecret(bytes))
    }

    pub fn base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The code of step `step` (Unix seconds / 30).
    pub fn code(&self, step: u64) -> u32 {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let mac = ring::hmac::sign(&key, &step.to_be_bytes());
        let mac = mac.as_ref();
        // Dynamic truncation (RFC 4226 §5.3).
        let offset = usize::from(mac[mac.len() - 1] & 0x0f);
        let word = u32::from_be_bytes([
            mac[offset] & 0x7f,
            mac[offset + 1],
            mac[offset + 2],
            mac[offset + 3],
        ]);
        word % 10u32.pow(DIGITS as u32)
    }

    /// The step `code` belongs to, if it is the code of now or of a step within the skew.
    pub fn verify(&self, code: &str, unix_secs: u64) -> Option<u64> {
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let given: u32 = code.parse().ok()?;
        let now = unix_secs / STEP;
        let mut hit = None;
        // Every step is computed, a hit or not: the time does not tell which step matched.
        for step in now.saturating_sub(SKEW)..=now + SKEW {
            if self.code(step) == given {
                hit = hit.or(Some(step));
            }
        }
        hit
    }

    /// The `otpauth://` URI an authenticator app reads (as a QR code or typed).
    pub fn uri(&self, issuer: &str, user: &str) -> String {
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
            encode(issuer),
            encode(user),
            self.base32(),
            encode(issuer)
        )
    }
}

/// Percent-encoding for a URI path segment or query value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A typed password split into the password and the code after it: `None` when it does not
/// end in six digits after at least one other character.
pub fn split_code(password: &[u8]) -> Option<(&[u8], &str)> {
    let cut = password.len().checked_sub(DIGITS)?;
    let (pass, code) = password.split_at(cut);
    if pass.is_empty() || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((pass, std::str::from_utf8(code).ok()?))
}

/// Codes used on this node, for servers without a user database (with one, the database
/// keeps them, so that every node sees them).
#[derive(Debug, Default)]
pub struct UsedCodes {
    used: Mutex<HashMap<(String, u64), IpAddr>>,
}

impl UsedCodes {
    /// Records the use of `user`'s code of `step` from `ip`: `true` when it was unused or used
    /// from this same address (parallel connections of one client log in with one code).
    pub fn take(&self, user: &str, step: u64, ip: IpAddr, now_step: u64) -> bool {
        let Ok(mut used) = self.used.lock() else {
            return false;
        };
        // Codes older than the window can no longer be typed: forget them.
        used.retain(|(_, s), _| *s + 2 * SKEW + 1 >= now_step);
        let ip = ip.to_canonical();
        *used.entry((user.to_string(), step)).or_insert(ip) == ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // Appendix B, SHA1, seed "12345678901234567890"; the 8-digit values' last 6 digits.
        let s = TotpSecret(b"12345678901234567890".to_vec());
        for (time, code) in [
            (59u64, 287_082u32),
            (1_111_111_109, 81_804),
            (1_111_111_111, 50_471),
            (1_234_567_890, 5_924),
            (2_000_000_000, 279_037),
            (20_000_000_000, 353_130),
        ] {
            assert_eq!(s.code(time / STEP), code, "T={time}");
        }
        assert_eq!(s.verify("287082", 59), Some(1));
        assert_eq!(s.verify("287082", 59 + 30), Some(1), "one step of skew");
        assert_eq!(s.verify("287082", 59 + 60), None, "two steps late");
        assert_eq!(s.verify("28708", 59), None);
        assert_eq!(s.verify("28708x", 59), None);
        assert_eq!(s.verify("+87082", 59), None);
    }

    #[test]
    fn secrets_and_uri() {
        let s = TotpSecret::parse("jbsw y3dp ehpk 3pxp").unwrap();
        assert_eq!(s.base32(), "JBSWY3DPEHPK3PXP");
        assert_eq!(TotpSecret::parse(&s.base32()).unwrap(), s);
        assert!(TotpSecret::parse("JBSWY3DP").is_err(), "40 bits");
        assert!(TotpSecret::parse("not base32 1890!").is_err());
        let new = TotpSecret::generate().unwrap();
        assert_eq!(new.base32().len(), 32);
        assert_ne!(new, TotpSecret::generate().unwrap());
        assert_eq!(
            s.uri("Wharf ftp.example", "al ice@x"),
            "otpauth://totp/Wharf%20ftp.example:al%20ice%40x?secret=JBSWY3DPEHPK3PXP&issuer=Wharf%20ftp.example&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{s:?}"), "TotpSecret(..)");
    }

    #[test]
    fn codes_split_from_passwords() {
        assert_eq!(split_code(b"pw123456"), Some((&b"pw"[..], "123456")));
        assert_eq!(split_code(b"123456"), None, "nothing before the code");
        assert_eq!(split_code(b"pw12345"), None);
        assert_eq!(split_code(b"pw12345x"), None);
        assert_eq!(split_code(b"1234567"), Some((&b"1"[..], "234567")));
    }

    #[test]
    fn a_used_code_is_taken_again_only_from_its_address() {
        let used = UsedCodes::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(used.take("alice", 100, a, 100));
        assert!(used.take("alice", 100, "::ffff:127.0.0.1".parse().unwrap(), 100));
        assert!(!used.take("alice", 100, b, 100));
        assert!(used.take("bob", 100, b, 100), "another user's code");
        assert!(used.take("alice", 101, b, 101), "the next step's code");
        // Long after, the record is gone (the code itself is no longer valid then).
        assert!(used.take("alice", 100, b, 200));
    }
}
