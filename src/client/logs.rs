//! `exeio logs ID [-n N] [-f] [--stream S]`: the last N lines oldest first
//! (pages of `GET /logs/ID`, which come newest first), or with `-f` the
//! follow stream, each line printed (and flushed) as soon as it arrives.
//! With several hosts each followed line is prefixed with its host.

use std::io::{BufRead, BufReader, Read, Write};

use serde_json::Value;

use super::args::LogsArgs;
use super::http::encode;
use super::{Ctx, Failure, Report};

/// The server's largest page.
const MAX_PAGE: usize = 1000;

pub fn logs(ctx: &Ctx<'_>, a: &LogsArgs, r: &mut Report) -> Result<(), Failure> {
    let stream = a
        .stream
        .as_deref()
        .map(|s| format!("&stream={}", encode(s)))
        .unwrap_or_default();
    if (a.page.is_some() || a.since.is_some()) && super::ops::page_or_since(ctx, a, &stream, r)? {
        return Ok(());
    }
    if a.follow {
        let tail = if a.since.is_some() { 0 } else { a.lines };
        return follow(ctx, a, &stream, tail);
    }
    let id = encode(&a.id);
    if a.lines == 0 {
        // Still ask, so an unknown id says so.
        let reply = ctx
            .client
            .get(&format!("/logs/{id}?page=1&page_size=1{stream}"))?;
        if ctx.json {
            r.out.push_str(&reply.text());
            r.out.push('\n');
        }
        return Ok(());
    }
    let (pages, size) = plan(a.lines);
    let mut newest_first: Vec<String> = Vec::with_capacity(a.lines.min(10_000));
    for page in 1..=pages {
        let reply = ctx
            .client
            .get(&format!("/logs/{id}?page={page}&page_size={size}{stream}"))?;
        if ctx.json {
            // The API's pages as they are, one a line.
            r.out.push_str(&reply.text());
            r.out.push('\n');
        }
        let v = reply.json()?;
        let lines = v["logs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let got = lines.len();
        newest_first.extend(lines.iter().filter_map(Value::as_str).map(str::to_owned));
        if got < size {
            break;
        }
    }
    if !ctx.json {
        r.out = oldest_first(newest_first, a.lines);
    }
    Ok(())
}

/// How many pages of which size hold the last `n` lines.
pub fn plan(n: usize) -> (usize, usize) {
    let size = n.clamp(1, MAX_PAGE);
    (n.div_ceil(size), size)
}

/// The first `n` of `newest_first`, oldest first, one a line.
pub fn oldest_first(mut newest_first: Vec<String>, n: usize) -> String {
    newest_first.truncate(n);
    let mut out = String::new();
    for line in newest_first.iter().rev() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Print the follow stream until it ends (the process was removed, exeio
/// stopped) or stdout is closed.
fn follow(ctx: &Ctx<'_>, a: &LogsArgs, stream: &str, tail: usize) -> Result<(), Failure> {
    let path = format!(
        "/logs/{}?follow=true&tail={}{stream}",
        encode(&a.id),
        tail.min(MAX_PAGE)
    );
    let prefix = ctx.label.map(|h| format!("{h}: ")).unwrap_or_default();
    print_stream(ctx, ctx.client.stream(&path)?, &prefix)
}

/// Print a follow stream line by line, each after `prefix`, until it ends
/// (the process was removed, exeio stopped) or stdout is closed.
pub fn print_stream(ctx: &Ctx<'_>, body: impl Read, prefix: &str) -> Result<(), Failure> {
    copy_lines(ctx, body, prefix).map(drop)
}

/// `print_stream`, saying whether it ended because stdout was closed.
pub fn copy_lines(ctx: &Ctx<'_>, body: impl Read, prefix: &str) -> Result<bool, Failure> {
    let mut reader = BufReader::new(body);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) => {
                return Err(Failure::Connect {
                    url: ctx.client.url.clone(),
                    message: format!("the log stream broke: {e}"),
                });
            }
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        let written = out
            .write_all(prefix.as_bytes())
            .and_then(|()| out.write_all(&line))
            .and_then(|()| out.flush());
        if written.is_err() {
            return Ok(true); // stdout closed: `exeio logs -f x | head`
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_n_lines() {
        assert_eq!(plan(1), (1, 1));
        assert_eq!(plan(3), (1, 3));
        assert_eq!(plan(1000), (1, 1000));
        assert_eq!(plan(1001), (2, 1000));
        assert_eq!(plan(2500), (3, 1000));
    }

    #[test]
    fn reverses_to_oldest_first() {
        let newest = vec!["c".to_owned(), "b".into(), "a".into()];
        assert_eq!(oldest_first(newest.clone(), 3), "a\nb\nc\n");
        assert_eq!(oldest_first(newest.clone(), 2), "b\nc\n");
        assert_eq!(oldest_first(newest, 10), "a\nb\nc\n");
        assert_eq!(oldest_first(vec![], 3), "");
    }
}
