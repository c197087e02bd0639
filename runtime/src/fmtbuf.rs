//! Formatting without allocation: `core::fmt` into a fixed buffer on the
//! stack. Used for log lines and stats files, which may be written from
//! `_exit`, a vfork-shared address space or a signal-interrupted thread.

use core::fmt;

/// A fixed-capacity text buffer; output beyond the capacity is dropped and
/// remembered.
#[derive(Debug)]
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        StackBuf { buf: [0; N], len: 0, overflowed: false }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// True if something did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Appends raw bytes (as much as fits).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let room = N - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self.overflowed |= n < bytes.len();
    }

    /// Appends `text` as the inside of a JSON string (quotes not included).
    pub fn push_json_escaped(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '"' => self.push_bytes(b"\\\""),
                '\\' => self.push_bytes(b"\\\\"),
                '\n' => self.push_bytes(b"\\n"),
                '\r' => self.push_bytes(b"\\r"),
                '\t' => self.push_bytes(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = fmt::Write::write_fmt(self, format_args!("\\u{:04x}", c as u32));
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    self.push_bytes(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
    }
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn formats_and_truncates() {
        let mut b = StackBuf::<8>::new();
        let word = "ab";
        write!(b, "{}-{word}", 12).unwrap();
        assert_eq!(b.as_bytes(), b"12-ab");
        assert!(!b.overflowed());
        write!(b, "0123456789").unwrap();
        assert_eq!(b.as_bytes(), b"12-ab012");
        assert!(b.overflowed());
    }

    #[test]
    fn json_escaping() {
        let mut b = StackBuf::<64>::new();
        b.push_json_escaped("a\"b\\c\nd\u{1}é");
        assert_eq!(core::str::from_utf8(b.as_bytes()).unwrap(), "a\\\"b\\\\c\\nd\\u0001é");
    }
}
