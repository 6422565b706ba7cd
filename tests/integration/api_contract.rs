//! The live API keeps to its OpenAPI document (issue 12): schemathesis
//! (PyPI; `.ci/run` installs it) sends what the document allows and checks
//! every answer against it. Its runs are the longest tests of the suite
//! (CPU-bound Python processes); libtest starts tests in the order of
//! their names, and this module's name puts them first.

use crate::openapi::tool;
use crate::util::Daemon;

/// A daemon for one run (schemathesis opens many connections).
fn daemon() -> Daemon {
    Daemon::start_with(&["--max-connections-per-address", "256"], &[])
}

/// Schemathesis's `phases` on the operations `only` selects, against a
/// live exeio of its own, with the key. A run is a CPU-bound Python
/// process: all phases on all operations take about 25 s of CPU. In three
/// runs of about equal cost (the fuzzing of POSTs, the fuzzing of the
/// rest, the other phases) they run side by side with the suite.
/// Left out: streams (/events, and follows never start: no process
/// exists), /shutdown, and the check that every schema-valid config is
/// accepted: a valid config whose program does not exist on this machine
/// is a 400 by contract (SPEC 4), which no schema can say.
/// One worker thread: with two, CPython's `ast` and `linecache` raced now
/// and then under load (schemathesis's own runtime errors: a KeyError
/// holding source lines, "AST constructor recursion depth mismatch"); a
/// run is one process anyway, the three runs side by side. A run that
/// only hit such errors (an ERRORS section, no FAILURES) is run once
/// more; a failure of exeio's is never retried.
fn the_live_api_keeps_to_the_document(phases: &str, only: &[&str]) {
    let what = format!("{phases} {}", only.join(" "));
    let d = daemon();
    let mut attempts = 0;
    let (out, text) = loop {
        attempts += 1;
        let out = tool("schemathesis")
            .arg("run")
            .arg(format!("http://{}/openapi.json", d.addr()))
            .args(["-H", &format!("exeio-api-key: {}", d.key)])
            .args(["--exclude-path", "/shutdown", "--exclude-path", "/events"])
            .args(["--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", "40", "--workers", "1", "--seed", "1"])
            .args(["--phases", phases])
            .args(only)
            .current_dir(d.tmp()) // its cache goes there, not into the repository
            .output()
            .expect("schemathesis (pip install schemathesis)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let only_its_own_errors = !out.status.success()
            && !text.contains("= FAILURES =")
            && text.contains("Runtime Error");
        if !only_its_own_errors || attempts == 2 {
            break (out, text);
        }
        println!("schemathesis ({what}) hit a runtime error of its own; running it again");
    };
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failures"))
        .collect();
    println!("schemathesis ({what}): {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis ({what}) found failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(" generated, "),
        "schemathesis ({what}) generated no test case:\n{text}"
    );
    assert!(crate::util::pid_alive(d.pid()), "exeio survived the run");
}

#[test]
fn schemathesis_examples_coverage_and_stateful() {
    the_live_api_keeps_to_the_document("examples,coverage,stateful", &[]);
}

#[test]
fn schemathesis_fuzzing_of_posts() {
    the_live_api_keeps_to_the_document("fuzzing", &["--include-method", "POST"]);
}

#[test]
fn schemathesis_fuzzing_of_the_other_methods() {
    the_live_api_keeps_to_the_document("fuzzing", &["--exclude-method", "POST"]);
}
