//! Unit tests of `deploy::extract`: one per refusal, each with a hostile
//! archive built here (the tar crate's Builder for what it writes, raw
//! headers for what it refuses to write).

use super::*;
use std::os::unix::fs::MetadataExt;

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};

/// A scratch dir with an `out/` to extract into, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("exeio-extract-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("out")).unwrap();
        Scratch { dir }
    }
    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }
    /// Write `bytes` as the archive and extract it into `out/`.
    fn run(&self, bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
        let archive = self.dir.join("archive");
        fs::write(&archive, bytes).unwrap();
        extract(&archive, &self.out(), limits, None)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn limits() -> Limits {
    Limits {
        max_bytes: 1 << 30,
        max_entries: 1000,
    }
}

/// One raw entry: a GNU header with `name` and `link` written as given
/// (the Builder refuses `..` and absolute paths), then `data`, padded.
fn raw(name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Regular, b"", data)
}

fn symlink(name: &str, target: &str) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Symlink, target.as_bytes(), b"")
}

fn hardlink(name: &str, target: &str) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Link, target.as_bytes(), b"")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The entry an `Unsafe` error names, or a panic saying what came instead.
fn refused(r: Result<Extracted, ExtractError>) -> (String, String) {
    match r {
        Err(ExtractError::Unsafe { entry, why }) => (entry, why),
        other => panic!("expected Unsafe, got {other:?}"),
    }
}

/// A normal release via the tar crate's Builder: dirs, files, a long name,
/// links inside; modes kept less setuid/setgid and group/other write.
fn good_release() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("./bin/app", 0o6777, b"#!/bin/sh\necho hi\n");
    add("lib/deep/x.txt", 0o664, b"x");
    let long = format!("{}/long.txt", "d".repeat(150));
    add(&long, 0o644, b"long");
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Directory);
    h.set_mode(0o775);
    h.set_size(0);
    b.append_data(&mut h, "conf/", io::empty()).unwrap();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "lib/deep/up", "../../bin/app")
        .unwrap();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "conf/same", "lib/deep/x.txt")
        .unwrap();
    b.into_inner().unwrap()
}

#[test]
fn extracts_a_normal_release_plain_or_gzipped() {
    for (label, bytes) in [("plain", good_release()), ("gzip", gzip(&good_release()))] {
        let s = Scratch::new(&format!("good-{label}"));
        let got = s.run(&bytes, &limits()).unwrap();
        let out = s.out();
        assert_eq!(
            fs::read(out.join("bin/app")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        let mode = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("bin/app"), 0o755, "setuid, setgid, g+w, o+w dropped");
        assert_eq!(mode("lib/deep/x.txt"), 0o644);
        assert_eq!(mode("conf"), 0o755);
        let long = format!("{}/long.txt", "d".repeat(150));
        assert_eq!(fs::read(out.join(long)).unwrap(), b"long");
        assert_eq!(
            fs::read_link(out.join("lib/deep/up")).unwrap(),
            Path::new("../../bin/app")
        );
        assert_eq!(fs::read(out.join("conf/same")).unwrap(), b"x");
        assert_eq!(got.bytes, 18 + 1 + 4);
        assert!(got.files >= 6, "{got:?}");
    }
}

#[test]
fn refuses_an_absolute_path() {
    let s = Scratch::new("abs");
    let (entry, why) = refused(s.run(&archive(&[file("/tmp/evil", b"x")]), &limits()));
    assert_eq!(entry, "/tmp/evil");
    assert!(why.contains("absolute"), "{why}");
}

#[test]
fn refuses_dot_dot() {
    let s = Scratch::new("dotdot");
    let (entry, why) = refused(s.run(&archive(&[file("a/../../evil", b"x")]), &limits()));
    assert_eq!(entry, "a/../../evil");
    assert!(why.contains(".."), "{why}");
    assert!(!s.dir.join("evil").exists());
}

#[test]
fn refuses_a_dot_dot_in_a_pax_path() {
    let mut pax = Vec::new();
    let rec = "path=../evil\n";
    pax.extend_from_slice(format!("{} {rec}", rec.len() + 3).as_bytes());
    let bytes = archive(&[
        raw(b"pax", EntryType::XHeader, b"", &pax),
        file("innocent", b"x"),
    ]);
    let s = Scratch::new("pax");
    let (entry, _) = refused(s.run(&bytes, &limits()));
    assert_eq!(entry, "../evil");
}

#[test]
fn refuses_a_symlink_to_an_absolute_path() {
    let s = Scratch::new("symabs");
    let (entry, why) = refused(s.run(&archive(&[symlink("etc", "/etc")]), &limits()));
    assert_eq!(entry, "etc");
    assert!(why.contains("absolute"), "{why}");
}

#[test]
fn refuses_a_symlink_climbing_out() {
    let s = Scratch::new("symout");
    let (entry, why) = refused(s.run(&archive(&[symlink("a/up", "../../x")]), &limits()));
    assert_eq!(entry, "a/up");
    assert!(why.contains("outside"), "{why}");
    // The same climb one level deeper stays inside.
    let s = Scratch::new("symin");
    s.run(&archive(&[symlink("a/b/up", "../../x")]), &limits())
        .unwrap();
}

#[test]
fn refuses_dot_dot_after_a_name_in_a_link() {
    // `s -> .` is inside, but `t -> s/..` would climb out through it.
    let s = Scratch::new("symchain");
    let bytes = archive(&[symlink("s", "."), symlink("t", "s/..")]);
    let (entry, why) = refused(s.run(&bytes, &limits()));
    assert_eq!(entry, "t");
    assert!(why.contains("after a name"), "{why}");
}

#[test]
fn refuses_an_entry_written_through_a_symlink() {
    // RUSTSEC-2021-0080 / 2026-0067 shape: a link, then a file under it.
    let s = Scratch::new("through");
    let outside = s.dir.join("outside");
    fs::create_dir(&outside).unwrap();
    let bytes = archive(&[symlink("sub", "."), file("sub/f", b"x")]);
    let (entry, why) = refused(s.run(&bytes, &limits()));
    assert_eq!(entry, "sub/f");
    assert!(why.contains("through the symlink \"sub\""), "{why}");
    // A dir entry through a link is refused the same way.
    let s = Scratch::new("throughdir");
    let bytes = archive(&[
        symlink("l", "."),
        raw(b"l/d/", EntryType::Directory, b"", b""),
    ]);
    assert_eq!(refused(s.run(&bytes, &limits())).0, "l/d/");
}

#[test]
fn refuses_a_hard_link_leaving_the_release() {
    for (label, target) in [("abs", "/etc/passwd"), ("up", "../x"), ("missing", "nope")] {
        let s = Scratch::new(&format!("hard-{label}"));
        let (entry, why) = refused(s.run(&archive(&[hardlink("h", target)]), &limits()));
        assert_eq!(entry, "h");
        assert!(why.contains("link target"), "{why}");
    }
}

#[test]
fn refuses_a_hard_link_to_a_symlink_or_through_one() {
    let s = Scratch::new("hard-sym");
    let bytes = archive(&[symlink("s", "."), hardlink("h", "s")]);
    assert_eq!(refused(s.run(&bytes, &limits())).0, "h");
    let s = Scratch::new("hard-through");
    let bytes = archive(&[file("f", b"x"), symlink("s", "."), hardlink("h", "s/f")]);
    let (entry, why) = refused(s.run(&bytes, &limits()));
    assert_eq!(entry, "h");
    assert!(why.contains("through a symlink"), "{why}");
}

#[test]
fn refuses_device_files() {
    for kind in [EntryType::Char, EntryType::Block] {
        let s = Scratch::new("dev");
        let bytes = archive(&[raw(b"dev/null", kind, b"", b"")]);
        let (entry, why) = refused(s.run(&bytes, &limits()));
        assert_eq!(entry, "dev/null");
        assert!(why.contains("device"), "{why}");
    }
}

#[test]
fn refuses_fifos() {
    let s = Scratch::new("fifo");
    let bytes = archive(&[raw(b"pipe", EntryType::Fifo, b"", b"")]);
    let (entry, why) = refused(s.run(&bytes, &limits()));
    assert_eq!(entry, "pipe");
    assert!(why.contains("fifo"), "{why}");
}

#[test]
fn refuses_a_duplicate_entry() {
    let s = Scratch::new("dup");
    let bytes = archive(&[file("f", b"1"), file("f", b"2")]);
    let (entry, why) = refused(s.run(&bytes, &limits()));
    assert_eq!(entry, "f");
    assert!(why.contains("twice"), "{why}");
    assert_eq!(fs::read(s.out().join("f")).unwrap(), b"1");
}

#[test]
fn a_gzip_bomb_stops_at_the_cap() {
    // 64 MiB of zeros in one entry gzips to ~64 KiB; the cap is 1 MiB.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    let mut h = Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let s = Scratch::new("bomb");
    let small = Limits {
        max_bytes: 1 << 20,
        max_entries: 1000,
    };
    let err = s.run(&bomb, &small).unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge(_)), "{err:?}");
    assert_eq!(err.status(), 413);
    assert!(!s.out().join("zeros").exists(), "nothing written");
}

#[test]
fn many_small_files_stop_at_the_byte_cap_too() {
    let entries: Vec<Vec<u8>> = (0..20)
        .map(|i| file(&format!("f{i}"), &[7u8; 100]))
        .collect();
    let s = Scratch::new("bytes");
    let small = Limits {
        max_bytes: 1000,
        max_entries: 1000,
    };
    let err = s.run(&archive(&entries), &small).unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge(_)), "{err:?}");
    assert!(!s.out().join("f10").exists());
}

#[test]
fn too_many_entries_stop_at_the_cap() {
    let entries: Vec<Vec<u8>> = (0..20).map(|i| file(&format!("d{i}/f"), b"")).collect();
    let s = Scratch::new("entries");
    let small = Limits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let err = s.run(&archive(&entries), &small).unwrap_err();
    assert!(err.to_string().contains("more than 10 entries"), "{err}");
}

#[test]
fn corrupt_archives_are_refused() {
    let s = Scratch::new("corrupt");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let err = s.run(&garbage, &limits()).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt(_)), "{err:?}");
    assert_eq!(err.status(), 400);
    // A gzip cut in the middle.
    let gz = gzip(&good_release());
    let err = s.run(&gz[..gz.len() / 2], &limits()).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt(_)), "{err:?}");
    // A plain tar without its end-of-archive marker (a cut upload).
    let s = Scratch::new("cut");
    let err = s.run(&file("f", b"x"), &limits()).unwrap_err();
    assert!(err.to_string().contains("cut short"), "{err}");
}

#[test]
fn an_ambiguous_pax_size_is_refused() {
    let rec = "size=5\n";
    let pax = format!("{} {rec}", rec.len() + 2);
    let bytes = archive(&[
        raw(b"pax", EntryType::XHeader, b"", pax.as_bytes()),
        file("f", b"xx"),
    ]);
    let s = Scratch::new("paxsize");
    let (entry, why) = refused(s.run(&bytes, &limits()));
    assert_eq!(entry, "f");
    assert!(why.contains("pax size"), "{why}");
}

#[test]
fn a_full_disk_is_io_and_507() {
    let e = ExtractError::Io(io::Error::from_raw_os_error(libc::ENOSPC));
    assert_eq!(e.status(), 507);
    assert!(e.to_string().contains("no space left"), "{e}");
    assert_eq!(ExtractError::Io(io::Error::other("x")).status(), 500);
}

#[test]
fn files_are_chowned_to_the_owner() {
    if !crate::sys::is_root() {
        return; // chown needs root; CI runs as root
    }
    let s = Scratch::new("owner");
    let archive_path = s.dir.join("a.tar");
    fs::write(&archive_path, good_release()).unwrap();
    let owner = Owner {
        uid: 54321,
        gid: 54322,
    };
    extract(&archive_path, &s.out(), &limits(), Some(&owner)).unwrap();
    for p in ["", "bin", "bin/app", "lib/deep/up", "conf"] {
        let m = fs::symlink_metadata(s.out().join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (54321, 54322), "{p}");
    }
}
