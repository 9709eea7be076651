//! Finds request heads in the bytes a connection receives and tells whether one carries both
//! `Content-Length` and `Transfer-Encoding` (request smuggling: a proxy in front that reads the
//! other header would see a different request). Line by line, whatever a line's length: a
//! request line (`… HTTP/1.x`) opens a head, an empty line closes it. Of each line it keeps the
//! start (enough for a header name) and the end (enough for the version), so a long request
//! line or header cannot hide the next line from it. It parses nothing else: hyper does. Body
//! bytes that look like a head can only make it refuse more, never less.

/// How much of a line's start is kept: longer than the header names looked for.
const KEEP_START: usize = 32;
/// How much of a line's end is kept: `" HTTP/1.1\r\n"`.
const KEEP_END: usize = 11;

#[derive(Default)]
pub(crate) struct HeadScan {
    start: Vec<u8>,
    end: Vec<u8>,
    length: usize,
    in_head: bool,
    content_length: bool,
    transfer_encoding: bool,
}

impl HeadScan {
    /// Feed received bytes; true when a head with both headers was completed.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut ambiguous = false;
        for &b in bytes {
            if self.start.len() < KEEP_START {
                self.start.push(b);
            }
            if self.end.len() == KEEP_END {
                self.end.remove(0);
            }
            self.end.push(b);
            self.length = self.length.saturating_add(1);
            if b == b'\n' {
                ambiguous |= self.end_line();
                self.start.clear();
                self.end.clear();
                self.length = 0;
            }
        }
        ambiguous
    }

    fn end_line(&mut self) -> bool {
        let (start, end) = (self.start.as_slice(), self.end.as_slice());
        if !self.in_head {
            let request_line = self.length > KEEP_END
                && [
                    &b" HTTP/1.1\r\n"[..],
                    b" HTTP/1.0\r\n",
                    b" HTTP/1.1\n",
                    b" HTTP/1.0\n",
                ]
                .iter()
                .any(|version| end.ends_with(version));
            if request_line {
                self.in_head = true;
                self.content_length = false;
                self.transfer_encoding = false;
            }
            return false;
        }
        if self.length <= 2 && (end == b"\r\n" || end == b"\n") {
            self.in_head = false;
            return self.content_length && self.transfer_encoding;
        }
        let starts = |name: &[u8]| {
            start
                .get(..name.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(name))
        };
        self.content_length |= starts(b"content-length:");
        self.transfer_encoding |= starts(b"transfer-encoding:");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut scan = HeadScan::default();
        chunks
            .iter()
            .fold(false, |seen, chunk| seen | scan.feed(chunk))
    }

    #[test]
    fn heads_with_both_framing_headers_are_found_across_reads() {
        let both = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(scan(&[both]));
        let (a, b) = both.split_at(37);
        assert!(scan(&[a, b]), "split inside a header name");
        let one_byte: Vec<&[u8]> = both.chunks(1).collect();
        assert!(scan(&one_byte));
        let lower = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n";
        assert!(scan(&[lower]));
    }

    #[test]
    fn long_lines_hide_nothing() {
        // A request line of 8 KiB, and a long header between the two, as hyper accepts them.
        let target = "a".repeat(8 * 1024);
        let long = format!(
            "POST /{target} HTTP/1.1\r\nX-Pad: {target}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert!(scan(&[long.as_bytes()]));
        let chunks: Vec<&[u8]> = long.as_bytes().chunks(300).collect();
        assert!(scan(&chunks));
    }

    #[test]
    fn ordinary_requests_pass() {
        let cl = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
        assert!(!scan(&[cl]));
        let te = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(!scan(&[te]));
        // The second request of a kept-alive connection is ambiguous, the first was not.
        let mut scan = HeadScan::default();
        assert!(!scan.feed(cl));
        assert!(scan.feed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"));
    }
}
