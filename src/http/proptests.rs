//! Property tests of the bytes-on-the-wire code: random heads (mutated
//! valid ones and raw bytes), fed whole and in random pieces, and random
//! chunk-size lines. Nothing panics, incremental and one-shot parsing agree,
//! and the caps hold. 10,000 cases per property and run.

use proptest::prelude::*;

use super::chunked::chunk_size;
use super::request::{HeadError, HeadReader, MAX_HEAD, MAX_LINE, parse_head};

const CASES: u32 = 10_000;

/// A plausible head, then mutated: bytes replaced, inserted, removed.
fn heads() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("Host: x".to_string()),
        Just("Content-Length: 5".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Connection: close".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,40}",
    ];
    let line = prop_oneof![
        Just("GET / HTTP/1.1".to_string()),
        Just("POST /session HTTP/1.1".to_string()),
        Just("GET http://h/x?y HTTP/1.0".to_string()),
        "[A-Z]{1,7} /[ -~]{0,30} HTTP/1\\.[01]",
    ];
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0u8..3);
    (
        line,
        prop::collection::vec(field, 0..8),
        prop::collection::vec(edit, 0..6),
    )
        .prop_map(|(line, fields, edits)| {
            let mut b = format!("{line}\r\n{}\r\n\r\n", fields.join("\r\n")).into_bytes();
            for (at, byte, kind) in edits {
                let i = at.index(b.len());
                match kind {
                    0 => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            b
        })
}

fn check_head(bytes: &[u8], cut: usize) -> Result<(), TestCaseError> {
    let whole = parse_head(bytes);
    // The same bytes arriving in two pieces: the same answer.
    let mut r = HeadReader::default();
    let cut = cut.min(bytes.len());
    let first = r.parse(&bytes[..cut]);
    let pieces = match first {
        Ok(None) => r.parse(bytes),
        other => other,
    };
    match (&whole, &pieces) {
        (Ok(Some((a, n))), Ok(Some((b, m)))) => {
            prop_assert_eq!(a, b);
            prop_assert_eq!(n, m);
        }
        (Ok(Some(_)), other) => {
            // Complete in the first piece already: same head.
            prop_assert!(other.is_ok(), "{:?} vs {:?}", whole, other);
        }
        (Err(_), Ok(Some(_))) | (Ok(None), Ok(Some(_))) => {
            prop_assert!(false, "{:?} vs {:?}", whole, pieces);
        }
        _ => {}
    }
    match whole {
        Ok(Some((head, used))) => {
            prop_assert!(used <= bytes.len() && used <= MAX_HEAD + 4);
            prop_assert!(head.headers.len() <= 100);
            for (k, v) in &head.headers {
                prop_assert!(!k.is_empty());
                prop_assert!(
                    !v.chars().any(|c| c.is_control() && c != '\t'),
                    "a control character in {:?}",
                    v
                );
                prop_assert!(!v.starts_with([' ', '\t']) && !v.ends_with([' ', '\t']));
            }
            prop_assert!(head.target.bytes().all(|b| b.is_ascii_graphic()));
            let _ = head.framing();
            let _ = head.keep_alive();
        }
        Ok(None) => {
            prop_assert!(bytes.len() <= MAX_HEAD, "an incomplete head past the cap");
        }
        Err(HeadError::TooLarge(_)) => {
            prop_assert!(
                bytes.len() > MAX_LINE.min(MAX_HEAD) || bytes.split(|&b| b == b'\n').count() > 100
            );
        }
        Err(_) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn mutated_heads(bytes in heads(), cut in any::<usize>()) {
        check_head(&bytes, cut % (bytes.len() + 1))?;
    }

    #[test]
    fn random_bytes_as_heads(bytes in prop::collection::vec(any::<u8>(), 0..600), cut in any::<usize>()) {
        check_head(&bytes, cut % (bytes.len() + 1))?;
    }

    #[test]
    fn chunk_size_lines(
        size in prop_oneof![any::<u64>().prop_map(|n| format!("{n:x}")), "[0-9a-fA-F+ -]{0,20}"],
        tail in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut line = size.clone().into_bytes();
        line.extend_from_slice(&tail);
        match chunk_size(&line) {
            Ok(Some((used, n, ext))) => {
                prop_assert!(used <= line.len() && ext < used);
                prop_assert_eq!(&line[used - 2..used], b"\r\n");
                prop_assert!(line[0].is_ascii_hexdigit());
                prop_assert!(size.len() <= 16 || n == 0 || u64::from_str_radix(&size[..16], 16).is_ok());
            }
            Ok(None) => prop_assert!(!line.contains(&b'\n')),
            Err(_) => {}
        }
    }
}
