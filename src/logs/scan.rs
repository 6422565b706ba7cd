//! Newline search and counting a machine word (8 bytes) at a time: the hot
//! loops of writing, paging and following logs.
//!
//! Pure functions over byte slices, for the other `logs` modules only.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// 0x80 in every byte of `w` that is `\n` (exact: no false positives).
fn nl_mask(w: u64) -> u64 {
    let x = w ^ (LO * b'\n' as u64);
    !(((x & !HI) + !HI) | x) & HI
}

fn word(c: &[u8]) -> u64 {
    u64::from_le_bytes(c.try_into().expect("8 bytes"))
}

pub(super) fn find_nl(h: &[u8]) -> Option<usize> {
    let mut words = h.chunks_exact(8);
    for (k, c) in (&mut words).enumerate() {
        let m = nl_mask(word(c));
        if m != 0 {
            return Some(k * 8 + m.trailing_zeros() as usize / 8);
        }
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&b| b == b'\n')
        .map(|i| h.len() - tail.len() + i)
}

pub(super) fn rfind_nl(h: &[u8]) -> Option<usize> {
    let mut words = h.rchunks_exact(8);
    for (k, c) in (&mut words).enumerate() {
        let m = nl_mask(word(c));
        if m != 0 {
            return Some(h.len() - 8 * (k + 1) + (63 - m.leading_zeros() as usize) / 8);
        }
    }
    words.remainder().iter().rposition(|&b| b == b'\n')
}

/// Per 255 words, sums the match bits of `nl_mask` in byte lanes, then adds the lanes up.
pub(super) fn count_nl(h: &[u8]) -> usize {
    const PAIRS: u64 = 0x00ff_00ff_00ff_00ff;
    let mut words = h.chunks_exact(8);
    let mut n = 0;
    for _ in 0..h.len().div_ceil(8 * 255) {
        let lanes = (&mut words)
            .take(255)
            .fold(0, |acc, c| acc + (nl_mask(word(c)) >> 7));
        let pairs = (lanes & PAIRS) + ((lanes >> 8) & PAIRS);
        n += (pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48) as usize;
    }
    n + words.remainder().iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_search_matches_the_naive_one() {
        let mut h: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        for (i, b) in h.iter_mut().enumerate() {
            if i % 37 == 0 || i % 53 == 0 || *b == b'\n' + 128 {
                *b = b'\n';
            }
        }
        for a in 0..40 {
            for b in (a..h.len()).step_by(13) {
                let s = &h[a..b];
                assert_eq!(find_nl(s), s.iter().position(|&c| c == b'\n'));
                assert_eq!(rfind_nl(s), s.iter().rposition(|&c| c == b'\n'));
                assert_eq!(count_nl(s), s.iter().filter(|&&c| c == b'\n').count());
            }
        }
        let many = b"\n".repeat(10_000);
        assert_eq!(
            count_nl(&many),
            10_000,
            "lanes are emptied before they overflow"
        );
    }
}
