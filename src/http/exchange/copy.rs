//! A body too big for memory (`POST /deploy`), copied to a sink as it
//! arrives: `Exchange::copy_body`. The other routes read theirs whole under
//! the 1 MiB cap (`read_body`); a route opts in to this one (its `Body`
//! says so in the route table), and only after the key and role are checked.
//!
//! Budgets (STYLE 19): the cap is the caller's (413 as soon as a declared
//! length or the bytes sent cross it: nothing more is read and the
//! connection closes); each read must bring bytes within the connection's
//! body timeout (an idle upload ends), and after `RATE_GRACE` the upload
//! must average at least `MIN_RATE`, so a client that trickles a byte now
//! and then cannot hold a connection slot for hours.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::super::chunked::chunk_size;
use super::super::request::Framing;
use super::{BodyError, Exchange};

/// The slowest average an upload may keep up after `RATE_GRACE`: 32 KiB/s
/// (512 MiB in under 5 h; a trickler is cut after `RATE_GRACE`).
pub const MIN_RATE: u64 = 32 * 1024;
/// How long an upload may start slowly before its rate is checked.
pub const RATE_GRACE: Duration = Duration::from_secs(30);

/// Why a body could not be copied.
#[derive(Debug)]
pub enum CopyError {
    Body(BodyError),
    /// The sink failed (a full disk): the body was not read to its end.
    Sink(io::Error),
}

impl From<BodyError> for CopyError {
    fn from(e: BodyError) -> CopyError {
        CopyError::Body(e)
    }
}

/// When to give up on a slow upload.
struct Pace {
    started: Instant,
    idle: Duration,
    received: u64,
}

impl Pace {
    /// The deadline of the next read, or a timeout now if the upload has
    /// been too slow on average.
    fn next(&self, now: Instant) -> Result<Instant, BodyError> {
        let took = now.duration_since(self.started);
        if too_slow(took, self.received) {
            return Err(BodyError::Timeout);
        }
        Ok(now + self.idle)
    }
}

/// Pure: has an upload that brought `received` bytes in `took` fallen
/// under the minimum rate?
pub fn too_slow(took: Duration, received: u64) -> bool {
    took > RATE_GRACE && (received as u128) * 1000 < MIN_RATE as u128 * took.as_millis()
}

impl Exchange<'_> {
    /// Copy the body into `sink`, at most `limit` bytes; the bytes copied.
    /// Over the limit (declared or sent): `TooLarge`, nothing more read.
    /// Any failure closes the connection after the reply.
    pub fn copy_body(&mut self, sink: &mut dyn Write, limit: u64) -> Result<u64, CopyError> {
        if self.body_read {
            return Ok(0);
        }
        if matches!(self.framing, Framing::Length(n) if n > limit) {
            self.close = true;
            return Err(BodyError::TooLarge.into());
        }
        self.continue_100();
        let mut pace = Pace {
            started: Instant::now(),
            idle: self.conn.limits.body_timeout,
            received: 0,
        };
        let result = match self.framing {
            Framing::None => Ok(0),
            Framing::Length(n) => self.copy_exact(sink, n, &mut pace),
            Framing::Chunked => self.copy_chunked(sink, limit, &mut pace),
        };
        match &result {
            Ok(_) => self.body_read = true,
            Err(_) => self.close = true,
        }
        result
    }

    /// `Expect: 100-continue`: the client may send its body now.
    fn continue_100(&mut self) {
        if self
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && self.head.minor == 1
            && !self.responded
        {
            let _ = self.conn.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
    }

    /// `n` bytes of data into `sink`.
    fn copy_exact(
        &mut self,
        sink: &mut dyn Write,
        n: u64,
        pace: &mut Pace,
    ) -> Result<u64, CopyError> {
        let mut left = n;
        while left > 0 {
            if self.conn.data().is_empty() {
                let deadline = pace.next(Instant::now())?;
                self.more(deadline)?;
            }
            let take = (left.min(self.conn.data().len() as u64)) as usize;
            sink.write_all(&self.conn.data()[..take])
                .map_err(CopyError::Sink)?;
            self.conn.consume(take);
            left -= take as u64;
            pace.received += take as u64;
        }
        Ok(n)
    }

    /// A chunked body (as `read_chunked`, written out instead of kept).
    fn copy_chunked(
        &mut self,
        sink: &mut dyn Write,
        limit: u64,
        pace: &mut Pace,
    ) -> Result<u64, CopyError> {
        let mut total = 0u64;
        let mut extra = 0u64;
        loop {
            let (used, size, ext) = loop {
                match chunk_size(self.conn.data()) {
                    Ok(Some(found)) => break found,
                    Ok(None) if self.conn.data().len() > 1024 => {
                        return Err(BodyError::Malformed("bad chunk size").into());
                    }
                    Ok(None) => {
                        let deadline = pace.next(Instant::now())?;
                        self.more(deadline)?;
                    }
                    Err(m) => return Err(BodyError::Malformed(m).into()),
                }
            };
            self.conn.consume(used);
            extra += ext as u64;
            let after = total
                .checked_add(size)
                .and_then(|n| n.checked_add(extra))
                .ok_or(BodyError::Malformed("chunk size out of range"))?;
            if after > limit {
                return Err(BodyError::TooLarge.into());
            }
            if size == 0 {
                let room = usize::try_from(limit - after)
                    .unwrap_or(usize::MAX)
                    .min(64 * 1024);
                let deadline = pace.next(Instant::now())?;
                self.trailers(room, deadline)?;
                return Ok(total);
            }
            self.copy_exact(sink, size, pace)?;
            total += size;
            while self.conn.data().len() < 2 {
                let deadline = pace.next(Instant::now())?;
                self.more(deadline)?;
            }
            if &self.conn.data()[..2] != b"\r\n" {
                return Err(BodyError::Malformed("chunk longer than its size").into());
            }
            self.conn.consume(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_upload_is_cut_only_after_the_grace() {
        let s = Duration::from_secs;
        // however slow, not in the first 30 s
        assert!(!too_slow(s(29), 0));
        assert!(!too_slow(RATE_GRACE, 1));
        // then the average counts
        assert!(too_slow(s(31), 30 * 1024));
        assert!(!too_slow(s(31), 31 * MIN_RATE));
        assert!(too_slow(s(600), 599 * MIN_RATE));
        assert!(!too_slow(s(600), 600 * MIN_RATE));
    }
}
