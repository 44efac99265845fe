//! Bytes to text. A UTF-16LE or UTF-8 byte-order mark decides for the whole file; without one,
//! each line is UTF-8 if valid and Windows-1252 otherwise (ConfigMgr 2007 writes 8-bit ANSI).

use std::borrow::Cow;

/// How a file's bytes are encoded, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No BOM: UTF-8, falling back to Windows-1252 line by line.
    Ansi,
    Utf8Bom,
    Utf16Le,
}

impl Encoding {
    /// Sniffs the BOM; returns the encoding and the BOM's length.
    pub fn sniff(start: &[u8]) -> (Encoding, usize) {
        let encoding = if start.starts_with(&[0xEF, 0xBB, 0xBF]) {
            Encoding::Utf8Bom
        } else if start.starts_with(&[0xFF, 0xFE]) {
            Encoding::Utf16Le
        } else {
            Encoding::Ansi
        };
        (encoding, encoding.bom_len())
    }

    /// The length of the byte-order mark a file in this encoding starts with.
    pub fn bom_len(self) -> usize {
        match self {
            Encoding::Ansi => 0,
            Encoding::Utf8Bom => 3,
            Encoding::Utf16Le => 2,
        }
    }

    /// The byte width of a line terminator's unit (`\n` or `\n\0`).
    pub fn unit(self) -> usize {
        match self {
            Encoding::Utf16Le => 2,
            _ => 1,
        }
    }
}

/// Decodes one line's bytes (without its terminator); `\r` at the end is dropped.
pub fn decode_line(bytes: &[u8], encoding: Encoding) -> Cow<'_, str> {
    let text: Cow<'_, str> = match encoding {
        Encoding::Utf16Le => {
            let (t, _) = encoding_rs::UTF_16LE.decode_without_bom_handling(bytes);
            Cow::Owned(t.into_owned())
        }
        Encoding::Ansi | Encoding::Utf8Bom => match std::str::from_utf8(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => {
                let (t, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
                Cow::Owned(t.into_owned())
            }
        },
    };
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.strip_suffix('\r').unwrap_or(s)),
        Cow::Owned(mut s) => {
            if s.ends_with('\r') {
                s.pop();
            }
            Cow::Owned(s)
        }
    }
}

/// Finds the next line terminator at or after `from`, aligned to the encoding's unit. Returns the
/// index of the terminator's first byte.
pub fn find_newline(buf: &[u8], from: usize, encoding: Encoding) -> Option<usize> {
    match encoding {
        Encoding::Utf16Le => {
            let mut i = from;
            while i + 1 < buf.len() {
                let at = memchr::memchr(b'\n', &buf[i..])? + i;
                if (at - from).is_multiple_of(2) && buf.get(at + 1) == Some(&0) {
                    return Some(at);
                }
                i = at + 1;
            }
            None
        }
        _ => memchr::memchr(b'\n', &buf[from..]).map(|i| i + from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_boms() {
        assert_eq!(
            Encoding::sniff(&[0xEF, 0xBB, 0xBF, b'a']),
            (Encoding::Utf8Bom, 3)
        );
        assert_eq!(
            Encoding::sniff(&[0xFF, 0xFE, b'a', 0]),
            (Encoding::Utf16Le, 2)
        );
        assert_eq!(Encoding::sniff(b"abc"), (Encoding::Ansi, 0));
    }

    #[test]
    fn windows_1252_fallback_per_line() {
        // "Café" in Windows-1252, and a valid UTF-8 line.
        assert_eq!(decode_line(b"Caf\xe9\r", Encoding::Ansi), "Café");
        assert_eq!(decode_line("Café".as_bytes(), Encoding::Ansi), "Café");
        // 0x80 is the euro sign in Windows-1252.
        assert_eq!(decode_line(b"\x80 5", Encoding::Ansi), "€ 5");
    }

    #[test]
    fn utf16_lines() {
        let bytes: Vec<u8> = "ab\r\ncd\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let nl = find_newline(&bytes, 0, Encoding::Utf16Le).expect("newline");
        assert_eq!(nl, 6);
        assert_eq!(decode_line(&bytes[..nl], Encoding::Utf16Le), "ab");
        let nl2 = find_newline(&bytes, nl + 2, Encoding::Utf16Le).expect("second");
        assert_eq!(decode_line(&bytes[nl + 2..nl2], Encoding::Utf16Le), "cd");
        // A 0x0A byte in the high half of a code unit is not a newline.
        let tricky: Vec<u8> = "\u{0a00}x\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(find_newline(&tricky, 0, Encoding::Utf16Le), Some(4));
    }
}
