//! The chunk-size line of a chunked body (RFC 9112 7.1), through
//! `httparse::parse_chunk_size` with exeio's stricter rules around it. Pure;
//! `exchange.rs` reads the chunks, counting extensions and trailers against
//! the body cap.

/// A chunk-size line at the start of `data`: `(bytes used, size, bytes of
/// extension)`, `None` if incomplete. Stricter than `httparse` alone: the
/// line starts with a hex digit, ends with CRLF (no bare LF anywhere), and
/// whitespace after the size may only be followed by the line's end (as in
/// h11 and RFC 9112 7.1).
pub fn chunk_size(data: &[u8]) -> Result<Option<(usize, u64, usize)>, &'static str> {
    const BAD: &str = "bad chunk size";
    let digits = data.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 && !data.is_empty() {
        return Err(BAD);
    }
    let after = &data[digits..];
    if after.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        && after
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t'))
            .is_some_and(|&b| b != b'\r')
    {
        return Err(BAD);
    }
    // A bare LF ends no line (httparse lets one pass inside an extension).
    if let Some(i) = data.iter().position(|&b| b == b'\n')
        && (i == 0 || data[i - 1] != b'\r')
    {
        return Err(BAD);
    }
    match httparse::parse_chunk_size(data) {
        Ok(httparse::Status::Complete((used, size))) => {
            Ok(Some((used, size, used.saturating_sub(digits + 2))))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(BAD),
    }
}
