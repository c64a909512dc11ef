//! TYPE A line-ending conversion (RFC 959 §3.1.1.1): the wire uses CRLF, local files use LF.
//! Both converters keep state across buffer boundaries, so they work on any chunking.

/// Local → wire: each LF becomes CRLF, unless the file already has CRLF there.
#[derive(Debug, Default)]
pub struct ToWire {
    last_was_cr: bool,
}

impl ToWire {
    pub fn new() -> ToWire {
        ToWire::default()
    }

    /// Appends the wire form of `input` to `out`.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 16);
        for &b in input {
            if b == b'\n' && !self.last_was_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.last_was_cr = b == b'\r';
        }
    }
}

/// Wire → local: CRLF becomes LF; a CR not followed by LF is kept.
#[derive(Debug, Default)]
pub struct FromWire {
    held_cr: bool,
}

impl FromWire {
    pub fn new() -> FromWire {
        FromWire::default()
    }

    /// Appends the local form of `input` to `out`. A CR at the end of `input` is held back until
    /// the next byte shows whether it starts a CRLF.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        for &b in input {
            if self.held_cr {
                self.held_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.held_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Call at end of data: emits a held CR.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_wire_chunked(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut c = ToWire::new();
        let mut out = Vec::new();
        for part in input.chunks(chunk) {
            c.convert(part, &mut out);
        }
        out
    }

    fn from_wire_chunked(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut c = FromWire::new();
        let mut out = Vec::new();
        for part in input.chunks(chunk) {
            c.convert(part, &mut out);
        }
        c.finish(&mut out);
        out
    }

    #[test]
    fn to_wire() {
        for chunk in [1, 2, 3, 100] {
            assert_eq!(
                to_wire_chunked(b"a\nb\r\nc\n\n", chunk),
                b"a\r\nb\r\nc\r\n\r\n"
            );
        }
    }

    #[test]
    fn from_wire() {
        for chunk in [1, 2, 3, 100] {
            assert_eq!(
                from_wire_chunked(b"a\r\nb\rc\r\n\r\nd\r", chunk),
                b"a\nb\rc\n\nd\r"
            );
        }
    }

    #[test]
    fn round_trip_unix_text() {
        let text = b"line one\nline two\n\nend";
        assert_eq!(from_wire_chunked(&to_wire_chunked(text, 5), 7), text);
    }
}
