//! Bytes at the request-head parser, whole and in two pieces: no panic, and
//! the incremental reader agrees with a one-shot parse.
#![no_main]

use exeio::http::request::{HeadReader, parse_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = parse_head(bytes);
    let mut reader = HeadReader::default();
    let cut = (cut as usize * bytes.len() / 255).min(bytes.len());
    let pieces = match reader.parse(&bytes[..cut]) {
        Ok(None) => reader.parse(bytes),
        other => other,
    };
    if let (Ok(Some(a)), Ok(Some(b))) = (&whole, &pieces) {
        assert_eq!(a, b);
    }
    if let Ok(Some((head, _))) = whole {
        let _ = head.framing();
    }
});
