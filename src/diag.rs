//! exeio's own messages on stdout/stderr (not the logs). One line each.

use std::io::Write;

/// A start-up line on stdout, flushed at once (tests and systemd read it).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A warning on stderr.
pub fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "exeio: warning: {line}");
}

/// The one error line before a non-zero exit.
pub fn error(err: &dyn std::error::Error) {
    let _ = writeln!(std::io::stderr().lock(), "exeio: error: {err}");
}
