//! The CLI over https: `--cacert` with a CA of one's own, and with a plain
//! self-signed certificate as openssl makes it (CA:TRUE), which the CLI
//! pins. Certificates are made with openssl; only loopback; the daemons are
//! this test's own, killed by pid.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::client::{client_cmd, code, lines_of, stderr, stdout};
use crate::util::*;

/// A CA and a server certificate for 127.0.0.1 made with openssl, or `None`
/// when there is no openssl.
fn test_ca(dir: &Path) -> Option<()> {
    let openssl = |args: &[&str]| openssl(dir, args);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=exeio test CA",
    ]);
    openssl(&ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&csr)?;
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .ok()?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])?;
    Some(())
}

/// A daemon that this test started itself (the fixture expects http://); killed by pid.
struct Own(Child);

impl Drop for Own {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_with_cacert() {
    let tmp = TempDir::new();
    if test_ca(tmp.path()).is_none() {
        eprintln!("openssl not found: https_with_cacert skipped");
        return;
    }
    let mut cmd = exeio_command(tmp.path());
    cmd.args(dir_args(tmp.path())).args(["--api-key", KEY]);
    cmd.arg("--tls-cert").arg(tmp.path().join("cert.pem"));
    cmd.arg("--tls-key").arg(tmp.path().join("key.pem"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut own = Own(cmd.spawn().expect("spawn exeio"));
    let rx = lines_of(&mut own.0);
    let first = rx.recv_timeout(SHORT).expect("a listening line");
    let u = first
        .strip_prefix("exeio listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .trim_end_matches('/')
        .to_string();
    assert!(u.starts_with("https://127.0.0.1:"), "{u}");
    let ca = tmp.path().join("ca.pem");
    let o = run_to_end(
        client_cmd(
            tmp.path(),
            &["ls"],
            &["--url", &u, "--key", KEY, "--cacert", ca.to_str().unwrap()],
        ),
        SHORT,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ID "));
    // without the CA the certificate is not trusted
    let o = run_to_end(
        client_cmd(tmp.path(), &["ls"], &["--url", &u, "--key", KEY]),
        SHORT,
    );
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
}

/// A plain self-signed certificate for 127.0.0.1, as openssl makes it by
/// default (basicConstraints CA:TRUE), in `dir`/`name`.pem with its key in
/// `dir`/`name`.key; `None` when there is no openssl.
pub(crate) fn self_signed(dir: &Path, name: &str) -> Option<()> {
    let cert = format!("{name}.pem");
    let key = format!("{name}.key");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    )
}

/// `openssl ARGS` in `dir`, quietly; `None` if it failed or is missing.
fn openssl(dir: &Path, args: &[&str]) -> Option<()> {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| ())
}

#[test]
fn a_plain_self_signed_certificate_given_with_cacert_is_pinned() {
    let tmp = TempDir::new();
    if self_signed(tmp.path(), "server").is_none() || self_signed(tmp.path(), "other").is_none() {
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
    let port = d.addr().rsplit(':').next().unwrap().to_string();
    let ls = |host: &str, cacert: &str| {
        let u = format!("https://{host}:{port}");
        run_to_end(
            client_cmd(
                d.tmp(),
                &["ls"],
                &["--url", &u, "--key", KEY, "--cacert", cacert],
            ),
            SHORT,
        )
    };
    // The very certificate: trusted, though webpki alone refuses it
    // (CaUsedAsEndEntity).
    let o = ls("127.0.0.1", &file("server.pem"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ID "), "{}", stdout(&o));
    // Another self-signed certificate: not this server's.
    let o = ls("127.0.0.1", &file("other.pem"));
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
    // The pinned certificate must still name the host it is used for.
    let o = ls("localhost", &file("server.pem"));
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
}
