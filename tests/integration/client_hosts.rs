//! The client against several hosts at once (`--url` repeated, `--hosts
//! FILE`): one table with a HOST column, commands sent to every host, and a
//! host that is down named on stderr while the others answer. Only loopback;
//! the daemons are this test's own.

use std::fs;

use crate::client::{cli, client_cmd, code, sleeper, stderr, stdout, url};
use crate::util::*;

#[test]
fn several_hosts_in_one_table() {
    let d1 = Daemon::start();
    let d2 = Daemon::start();
    add_ok(&d1, sleeper("one"));
    add_ok(&d2, sleeper("two"));
    let (u1, u2) = (url(&d1), url(&d2));
    let o = run_to_end(
        client_cmd(
            d1.tmp(),
            &["ls"],
            &["--url", &u1, "--url", &u2, "--key", KEY],
        ),
        SHORT,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("HOST ") && lines[0].contains(" ID "),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&u1) && l.contains(" one ")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&u2) && l.contains(" two ")),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");

    // --hosts FILE, with a host that is down: the others still answer, exit 1
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hosts = d1.tmp().join("hosts");
    fs::write(
        &hosts,
        format!("# fleet\n{u1}\n\n{u2}   # second\nhttp://127.0.0.1:{port}\n"),
    )
    .unwrap();
    let o = run_to_end(
        client_cmd(
            d1.tmp(),
            &["ls"],
            &["--hosts", hosts.to_str().unwrap(), "--key", KEY],
        ),
        SHORT,
    );
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&o)
    );

    // other commands act on every host and say which answered what
    let o = run_to_end(
        client_cmd(
            d1.tmp(),
            &["stop", "one"],
            &["--url", &u1, "--url", &u2, "--key", KEY],
        ),
        SHORT,
    );
    assert_eq!(code(&o), 4, "two has no 'one'");
    assert!(
        stdout(&o).contains(&format!("==> {u1} <==\nprocess 'one' stopped")),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains(&format!("{u2}: no process with id 'one'")),
        "{}",
        stderr(&o)
    );
    assert_eq!(state_of(&d1, "one"), "manually_stopped");
    // one host: no HOST column
    let o = cli(&d2, &["ls"]);
    assert!(stdout(&o).starts_with("ID "), "{}", stdout(&o));
}
