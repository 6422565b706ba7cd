//! The client's everyday commands (issue 21): a certificate error that says
//! what to do, `EXEIO_CACERT`, and a command for every endpoint. The real
//! binary as a client against real daemons; only loopback.

use crate::client::{client_cmd, code, stderr, stdout};
use crate::client_tls::self_signed;
use crate::util::*;

#[test]
fn a_certificate_error_says_what_to_do_and_exeio_cacert_is_read() {
    let tmp = TempDir::new();
    if self_signed(tmp.path(), "server").is_none() {
        eprintln!("openssl not found: skipped");
        return;
    }
    let file = |n: &str| tmp.path().join(n).display().to_string();
    let opts = Options {
        args: vec![
            "--tls-cert".into(),
            file("server.pem"),
            "--tls-key".into(),
            file("server.key"),
        ],
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    let u = format!("https://{}", d.addr());
    let o = run_to_end(
        client_cmd(d.tmp(), &["ls"], &["--url", &u, "--key", KEY]),
        SHORT,
    );
    assert_eq!(code(&o), 1);
    let e = stderr(&o);
    assert!(
        e.contains("--cacert FILE") && e.contains("EXEIO_CACERT"),
        "{e}"
    );
    assert!(e.contains("self-signed"), "{e}");
    assert!(!e.contains("CaUsedAsEndEntity"), "{e}");
    let mut cmd = client_cmd(d.tmp(), &["ls"], &["--url", &u, "--key", KEY]);
    cmd.env("EXEIO_CACERT", file("server.pem"));
    let o = run_to_end(cmd, SHORT);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ID "), "{}", stdout(&o));
}
