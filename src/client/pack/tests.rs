use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};

use flate2::read::GzDecoder;

use super::*;

/// A fresh empty directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("random");
        let p = std::env::temp_dir().join(format!("exeio-pack-{tag}-{}", hex(&r)));
        fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(p: &Path, body: &[u8], mode: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with what releases hold: nested dirs, modes, links, odd names.
pub(crate) fn sample(root: &Path) {
    write(
        &root.join("run.sh"),
        b"#!/bin/sh\nexec python3 app.py\n",
        0o755,
    );
    write(&root.join("app.py"), b"print('hi')\n", 0o644);
    write(&root.join("secret.cfg"), b"k=v\n", 0o600);
    write(&root.join("lib/b.py"), b"B = 2\n", 0o640);
    write(&root.join("lib/a.py"), b"A = 1\n", 0o644);
    write(&root.join(".env"), b"", 0o644);
    write(&root.join("static/caf\u{e9} menu.txt"), b"x", 0o644);
    let long = "d".repeat(120);
    write(&root.join(&long).join("f".repeat(120)), b"long", 0o644);
    fs::create_dir(root.join("empty")).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("lib/a.py", root.join("current.py")).unwrap();
    symlink("../app.py", root.join("lib/up.py")).unwrap();
    symlink("x/".repeat(60) + "y", root.join("deep-link")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    let raw = std::ffi::OsStr::from_bytes(b"bytes-\xff.bin");
    write(&root.join(raw), b"not utf-8", 0o644);
}

/// (path, type, mode, size, link target, mtime) of each entry, in order.
type Row = (Vec<u8>, EntryType, u32, u64, Option<Vec<u8>>, u64);

fn entries(tgz: &[u8]) -> Vec<Row> {
    let mut a = tar::Archive::new(GzDecoder::new(tgz));
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path_bytes().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                h.size().unwrap(),
                e.link_name_bytes().map(|l| l.into_owned()),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

fn packed(dir: &Path) -> Vec<u8> {
    pack(dir, Vec::new()).unwrap()
}

#[test]
fn packing_is_deterministic_and_sorted() {
    let t = TempDir::new("order");
    sample(&t.0);
    let once = packed(&t.0);
    assert_eq!(once, packed(&t.0), "two packs of one tree differ");
    let names: Vec<String> = entries(&once)
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.0).into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| {
        // Depth first, each directory's entries by name: compare component-wise.
        a.split('/').cmp(b.split('/'))
    });
    assert_eq!(names, sorted);
    assert_eq!(names[0], ".env");
    let lib = names.iter().position(|n| n == "lib").unwrap();
    assert_eq!(
        &names[lib + 1..lib + 4],
        ["lib/a.py", "lib/b.py", "lib/up.py"]
    );
}

#[test]
fn modes_mtimes_and_links_are_kept() {
    let t = TempDir::new("modes");
    sample(&t.0);
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    File::options()
        .write(true)
        .open(t.0.join("app.py"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let rows = entries(&packed(&t.0));
    let get = |name: &str| {
        rows.iter()
            .find(|r| r.0 == name.as_bytes())
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    assert_eq!(get("run.sh").2, 0o755);
    assert_eq!(get("secret.cfg").2, 0o600);
    assert_eq!(get("lib/b.py").2, 0o640);
    assert_eq!(get("empty").1, EntryType::Directory);
    assert_eq!(get("empty").2, 0o700);
    assert_eq!(get("app.py").5, 1_700_000_000, "the real mtime");
    assert_eq!(get("app.py").3, 12);
    let link = get("current.py");
    assert_eq!(link.1, EntryType::Symlink);
    assert_eq!(link.4.as_deref(), Some(&b"lib/a.py"[..]));
    assert_eq!(get("lib/up.py").4.as_deref(), Some(&b"../app.py"[..]));
    assert_eq!(get("abs-link").4.as_deref(), Some(&b"/etc/hostname"[..]));
    let deep = get("deep-link").4.unwrap();
    assert_eq!(deep.len(), 121, "a long link target whole");
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    assert_eq!(get(&long).3, 4, "a long path whole");
    assert!(rows.iter().any(|r| r.0 == b"bytes-\xff.bin"));
    assert!(rows.iter().all(|r| r.0.first() != Some(&b'/')));
}

#[test]
fn the_stream_is_what_was_hashed() {
    let t = TempDir::new("stream");
    sample(&t.0);
    // Enough incompressible bytes for many chunks through the channel.
    let mut noise = vec![0u8; 3 * CHUNK * IN_FLIGHT];
    getrandom::fill(&mut noise).unwrap();
    write(&t.0.join("noise.bin"), &noise, 0o644);
    let src = Source::open(&t.0).unwrap();
    let d = src.digest().unwrap();
    let mut sent = Vec::new();
    src.stream().unwrap().read_to_end(&mut sent).unwrap();
    assert_eq!(sent.len() as u64, d.len);
    assert_eq!(hex(&Sha256::digest(&sent)), d.sha256);
    assert_eq!(sent, packed(&t.0));
    // A reader dropped half way stops its packer (no hang).
    let mut s = src.stream().unwrap();
    let mut first = [0u8; 100];
    s.read_exact(&mut first).unwrap();
    drop(s);
}

#[test]
fn an_archive_goes_as_it_is() {
    let t = TempDir::new("archive");
    let body = b"not even checked here: the server says if it is corrupt";
    for name in ["app.tar.gz", "APP.TGZ", "app.tar"] {
        fs::write(t.0.join(name), body).unwrap();
        let src = Source::open(&t.0.join(name)).unwrap();
        let d = src.digest().unwrap();
        assert_eq!(d.len, body.len() as u64);
        assert_eq!(d.sha256, hex(&Sha256::digest(body)));
        let mut sent = Vec::new();
        src.stream().unwrap().read_to_end(&mut sent).unwrap();
        assert_eq!(sent, body);
        let tar = name.ends_with(".tar");
        assert_eq!(src.content_type() == "application/x-tar", tar, "{name}");
    }
    fs::write(t.0.join("app.zip"), body).unwrap();
    for bad in ["app.zip", "missing.tar.gz"] {
        let got = Source::open(&t.0.join(bad));
        assert!(
            matches!(&got, Err(Failure::Other(m)) if m.contains(bad)),
            "{got:?}"
        );
    }
}

#[test]
fn a_socket_is_refused_by_name_and_the_empty_dir_packs() {
    let t = TempDir::new("special");
    let _l = std::os::unix::net::UnixListener::bind(t.0.join("app.sock")).unwrap();
    let err = pack(&t.0, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("app.sock"), "{err}");
    assert!(err.to_string().contains("cannot be deployed"), "{err}");
    let mut s = Source::open(&t.0).unwrap().stream().unwrap();
    let mut sink = Vec::new();
    let err = s.read_to_end(&mut sink).unwrap_err();
    assert!(err.to_string().contains("app.sock"), "{err}");
    let e = TempDir::new("empty");
    assert!(entries(&packed(&e.0)).is_empty());
}

#[test]
fn an_unreadable_file_is_named() {
    let t = TempDir::new("unreadable");
    write(&t.0.join("locked"), b"x", 0o000);
    if File::open(t.0.join("locked")).is_ok() {
        return; // root reads anything: nothing to test
    }
    let err = pack(&t.0, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
}

/// Each entry under `root`: (relative path, kind, mode, contents or link).
fn tree(root: &Path) -> Vec<(PathBuf, char, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let full = root.join(&rel);
            let m = fs::symlink_metadata(&full).unwrap();
            let (kind, body) = if m.file_type().is_symlink() {
                let t = fs::read_link(&full).unwrap();
                ('l', t.as_os_str().as_bytes().to_vec())
            } else if m.is_dir() {
                todo.push(rel.clone());
                ('d', Vec::new())
            } else {
                ('f', fs::read(&full).unwrap())
            };
            // Links have no mode of their own; the server drops g/o write.
            let mode = if kind == 'l' { 0 } else { m.mode() & 0o755 };
            out.push((rel, kind, mode, body));
        }
    }
    out.sort();
    out
}

/// What the CLI packs, the server's own extraction takes whole: the same
/// tree comes out (modes, links as links, long and odd names).
#[test]
fn the_server_extracts_what_is_packed() {
    let t = TempDir::new("accepted");
    let src = t.0.join("src");
    fs::create_dir(&src).unwrap();
    sample(&src);
    // The server refuses a link out of the release; the packer leaves that to it.
    fs::remove_file(src.join("abs-link")).unwrap();
    write(&src.join("shared.txt"), b"group-writable", 0o664);
    let archive = t.0.join("up.tar.gz");
    pack(&src, File::create(&archive).unwrap()).unwrap();
    let into = t.0.join("into");
    fs::create_dir(&into).unwrap();
    let limits = crate::deploy::Limits {
        max_bytes: 1 << 30,
        max_entries: 100_000,
    };
    let got = crate::deploy::extract(&archive, &into, &limits, None);
    assert!(got.is_ok(), "{:?}", got.err().map(|e| e.to_string()));
    assert_eq!(tree(&into), tree(&src));
    let m = fs::metadata(into.join("shared.txt")).unwrap().mode();
    assert_eq!(m & 0o777, 0o644, "group write dropped by the server");
}
