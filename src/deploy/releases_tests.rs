//! Unit tests of `deploy::releases` and `deploy::recover`: the pure choices
//! (names, last good, prune) and, on a scratch data dir, the commit, the
//! switch, and recovery from every state a crash can leave (made by doing
//! the steps up to that point, then calling `recover`).

use super::*;
use std::time::{Duration, UNIX_EPOCH};

struct Scratch {
    data: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let data =
            std::env::temp_dir().join(format!("exeio-releases-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data).unwrap();
        Scratch { data }
    }
    fn releases(&self) -> Releases {
        Releases::open(&self.data, "web").unwrap()
    }
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.data.join("releases/web"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.data);
    }
}

fn name(n: u64) -> String {
    release_name(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n),
        &format!("{n:012x}ffff"),
    )
}

/// Commit a release holding one file; returns its name.
fn deploy(r: &Releases, n: u64) -> String {
    let incoming = r.incoming().unwrap();
    fs::write(incoming.path().join("app"), format!("v{n}")).unwrap();
    let name = name(n);
    r.commit(incoming, &name, &format!("{n:064x}"), 10).unwrap();
    name
}

fn rel(name: &str, outcome: Outcome) -> Release {
    Release {
        release: name.to_owned(),
        sha256: String::new(),
        bytes: 0,
        deployed_at: String::new(),
        outcome,
    }
}

#[test]
fn names_have_the_spec_shape() {
    let at = UNIX_EPOCH
        + Duration::from_secs(crate::timefmt::unix_from_civil(2026, 12, 1, 1, 1, 2) as u64);
    let n = release_name(at, "ABCDEF0123456789aaaa");
    assert_eq!(n, "20261201T010102Z-abcdef012345");
    assert!(is_release_name(&n));
    for bad in [
        "current",
        "",
        "../x",
        "20261201T010102Z-abcdef01234",
        "20261201T010102Z-abcdef01234g",
    ] {
        assert!(!is_release_name(bad), "{bad}");
    }
}

#[test]
fn last_good_is_the_newest_succeeded_before() {
    use Outcome::*;
    let list = [
        rel("a", Succeeded),
        rel("b", RolledBack),
        rel("c", Succeeded),
        rel("d", Pending),
    ];
    assert_eq!(pick_last_good(&list, Some("d")).as_deref(), Some("c"));
    assert_eq!(pick_last_good(&list, Some("c")).as_deref(), Some("a"));
    assert_eq!(pick_last_good(&list, Some("a")), None);
    assert_eq!(pick_last_good(&list, None).as_deref(), Some("c"));
}

#[test]
fn prune_keeps_n_succeeded_and_failed_use_no_slot() {
    use Outcome::*;
    // Oldest first: a..h. Failed ones in between must not push out good ones.
    let list = [
        rel("a", Succeeded),
        rel("b", Succeeded),
        rel("c", Failed),
        rel("d", Succeeded),
        rel("e", RolledBack),
        rel("f", Succeeded),
        rel("g", Failed),
        rel("h", Succeeded),
    ];
    let gone = select_prune(&list, 2, Some("h"), Some("f"));
    // Failed first (oldest first), then the succeeded beyond 2.
    assert_eq!(gone, ["c", "e", "g", "a", "b", "d"].map(String::from));
}

#[test]
fn prune_never_takes_current_or_the_rollback_target() {
    use Outcome::*;
    // Rolled back by hand to "a": current and last good are old ones.
    let list = [
        rel("a", Succeeded),
        rel("b", Succeeded),
        rel("c", Succeeded),
        rel("d", Succeeded),
    ];
    let gone = select_prune(&list, 1, Some("a"), Some("b"));
    assert_eq!(gone, ["c"].map(String::from));
    // Capistrano #1907: five failed deploys after one good must not delete it.
    let mut list = vec![rel("a", Succeeded)];
    list.extend(["b", "c", "d", "e", "f"].map(|n| rel(n, Failed)));
    let gone = select_prune(&list, 1, Some("a"), None);
    assert!(!gone.contains(&"a".to_owned()), "{gone:?}");
    // The newest attempt, failed, is kept for inspection; older failed go.
    assert_eq!(gone, ["b", "c", "d", "e"].map(String::from));
}

#[test]
fn prune_keeps_pending_and_a_failed_current() {
    use Outcome::*;
    let list = [rel("a", Succeeded), rel("b", Failed), rel("c", Pending)];
    assert!(select_prune(&list, 1, Some("b"), Some("a")).is_empty());
}

#[test]
fn commit_switch_and_outcomes_on_disk() {
    let s = Scratch::new("flow");
    let r = s.releases();
    assert_eq!(r.current(), None);
    assert_eq!(live_dir(&s.data, "web"), None);
    let one = deploy(&r, 1);
    assert_eq!(r.get(&one).unwrap().outcome, Outcome::Pending);
    r.switch(&one).unwrap();
    r.set_outcome(&one, Outcome::Succeeded).unwrap();
    let two = deploy(&r, 2);
    r.switch(&two).unwrap();
    assert_eq!(r.current().as_deref(), Some(two.as_str()));
    assert_eq!(live_dir(&s.data, "web"), Some(r.dir(&two)));
    assert_eq!(fs::read_to_string(r.dir(&two).join("app")).unwrap(), "v2");
    assert_eq!(r.last_good(None).as_deref(), Some(one.as_str()));
    r.set_outcome(&two, Outcome::RolledBack).unwrap();
    r.switch(&one).unwrap();
    let list = r.list();
    assert_eq!(
        list.iter().map(|x| x.release.clone()).collect::<Vec<_>>(),
        [two.clone(), one.clone()]
    );
    assert_eq!(list[0].outcome, Outcome::RolledBack);
    assert!(r.set_outcome(&name(9), Outcome::Failed).is_err());
    // The same name twice is refused and leaves nothing behind.
    let again = r.incoming().unwrap();
    let err = r.commit(again, &one, "x", 1).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(s.entries(), sorted(&["current", &one, &two, META]));
    // Switching to a release that does not exist changes nothing.
    assert!(r.switch(&name(7)).is_err());
    assert_eq!(r.current().as_deref(), Some(one.as_str()));
    r.unlink_current().unwrap();
    assert_eq!(live_dir(&s.data, "web"), None);
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

#[test]
fn temps_are_removed_on_drop() {
    let s = Scratch::new("temps");
    let r = s.releases();
    let up = r.upload_path().unwrap();
    fs::write(up.path(), b"body").unwrap();
    let inc = r.incoming().unwrap();
    fs::write(inc.path().join("f"), b"x").unwrap();
    assert_eq!(s.entries().len(), 2);
    drop(up);
    drop(inc);
    assert!(s.entries().is_empty(), "{:?}", s.entries());
}

#[test]
fn prune_on_disk_deletes_dirs_and_metadata() {
    let s = Scratch::new("prune");
    let r = s.releases();
    let mut names = Vec::new();
    for n in 1..=4 {
        let name = deploy(&r, n);
        r.switch(&name).unwrap();
        r.set_outcome(&name, Outcome::Succeeded).unwrap();
        names.push(name);
    }
    let gone = r.prune(2);
    assert_eq!(gone, [names[0].clone(), names[1].clone()]);
    assert!(!r.dir(&names[0]).exists());
    assert_eq!(r.list().len(), 2);
    assert!(s.entries().iter().all(|e| !e.starts_with(REMOVING)));
}

#[test]
fn remove_all_removes_the_dir() {
    let s = Scratch::new("removeall");
    let r = s.releases();
    deploy(&r, 1);
    r.remove_all().unwrap();
    assert!(!s.data.join("releases/web").exists());
    assert_eq!(fs::read_dir(s.data.join("releases")).unwrap().count(), 0);
}

#[test]
fn open_refuses_ids_that_are_not_one_component() {
    let s = Scratch::new("ids");
    for bad in ["", "..", ".x", "a/b"] {
        assert!(Releases::open(&s.data, bad).is_err(), "{bad}");
    }
}

// Recovery: each test leaves the state a kill -9 at one point leaves.

/// A good release `one` live, then `two` committed (Pending).
fn one_good_then_two(s: &Scratch) -> (Releases, String, String) {
    let r = s.releases();
    let one = deploy(&r, 1);
    r.switch(&one).unwrap();
    r.set_outcome(&one, Outcome::Succeeded).unwrap();
    let two = deploy(&r, 2);
    (r, one, two)
}

fn said(log: &[String], what: &str) -> bool {
    log.iter().any(|l| l.contains(what))
}

#[test]
fn recover_removes_leftovers_of_every_step() {
    let s = Scratch::new("leftovers");
    let r = s.releases();
    let one = deploy(&r, 1);
    r.switch(&one).unwrap();
    r.set_outcome(&one, Outcome::Succeeded).unwrap();
    // Killed mid-upload, mid-extract, mid-switch, mid-metadata, mid-prune.
    std::mem::forget(
        r.upload_path()
            .map(|t| fs::write(t.path(), b"x").map(|_| t))
            .unwrap(),
    );
    let inc = r.incoming().unwrap();
    fs::write(inc.path().join("f"), b"x").unwrap();
    std::mem::forget(inc);
    std::os::unix::fs::symlink(name(2), r.root().join(CURRENT_TMP)).unwrap();
    fs::write(r.root().join(META_TMP), b"{").unwrap();
    fs::create_dir(r.root().join(format!("{REMOVING}abc"))).unwrap();
    fs::create_dir(s.data.join(format!("releases/{REMOVING}def"))).unwrap();
    let log = recover(&s.data);
    assert_eq!(
        log.iter().filter(|l| l.contains("removed")).count(),
        6,
        "{log:?}"
    );
    assert!(said(&log, "web: removed leftover .incoming-"), "{log:?}");
    assert_eq!(s.entries(), sorted(&["current", &one, META]));
    assert_eq!(r.current(), Some(one));
    assert!(
        recover(&s.data).is_empty(),
        "a second recovery has nothing to do"
    );
}

#[test]
fn recover_killed_after_commit_before_switch() {
    let s = Scratch::new("commit");
    let (r, one, two) = one_good_then_two(&s);
    let log = recover(&s.data);
    assert!(
        said(&log, &format!("release {two} marked failed")),
        "{log:?}"
    );
    assert_eq!(r.current(), Some(one));
    assert_eq!(r.get(&two).unwrap().outcome, Outcome::Failed);
}

#[test]
fn recover_killed_between_rename_and_metadata() {
    let s = Scratch::new("orphan");
    let (r, one, two) = one_good_then_two(&s);
    let mut meta = r.load().unwrap();
    meta.releases.retain(|x| x.release != two);
    r.save(&meta).unwrap();
    let log = recover(&s.data);
    assert!(
        said(
            &log,
            &format!("removed {two} (committed but never recorded)")
        ),
        "{log:?}"
    );
    assert!(!r.dir(&two).exists());
    assert_eq!(r.current(), Some(one));
}

#[test]
fn recover_killed_mid_gate_goes_back_to_the_previous() {
    let s = Scratch::new("gate");
    let (r, one, two) = one_good_then_two(&s);
    r.switch(&two).unwrap();
    let log = recover(&s.data);
    assert!(
        said(
            &log,
            &format!("current was {two}, whose deploy did not finish; switched back to {one}")
        ),
        "{log:?}"
    );
    assert_eq!(r.current(), Some(one.clone()));
    assert_eq!(live_dir(&s.data, "web"), Some(r.dir(&one)));
    assert_eq!(r.get(&two).unwrap().outcome, Outcome::Failed);
    assert!(r.dir(&two).exists(), "kept for inspection");
}

#[test]
fn recover_goes_back_to_the_release_it_replaced_not_only_the_newest_good() {
    // Three good releases, current rolled back by hand to the oldest; a
    // deploy killed mid-gate returns to that one.
    let s = Scratch::new("previous");
    let r = s.releases();
    let names: Vec<String> = (1..=3)
        .map(|n| {
            let x = deploy(&r, n);
            r.switch(&x).unwrap();
            r.set_outcome(&x, Outcome::Succeeded).unwrap();
            x
        })
        .collect();
    r.switch(&names[0]).unwrap();
    let four = deploy(&r, 4);
    r.switch(&four).unwrap();
    recover(&s.data);
    assert_eq!(r.current(), Some(names[0].clone()));
}

#[test]
fn recover_a_first_deploy_killed_mid_gate_unlinks_current() {
    let s = Scratch::new("first");
    let r = s.releases();
    let one = deploy(&r, 1);
    r.switch(&one).unwrap();
    let log = recover(&s.data);
    assert!(
        said(&log, "no earlier good release, current unlinked"),
        "{log:?}"
    );
    assert_eq!(r.current(), None);
    assert_eq!(live_dir(&s.data, "web"), None);
}

#[test]
fn recover_killed_after_the_verdict_keeps_the_new_release() {
    let s = Scratch::new("verdict");
    let (r, _, two) = one_good_then_two(&s);
    r.switch(&two).unwrap();
    r.set_outcome(&two, Outcome::Succeeded).unwrap();
    assert!(recover(&s.data).is_empty());
    assert_eq!(r.current(), Some(two));
}

#[test]
fn recover_killed_mid_rollback_after_the_verdict() {
    // The gate said no (rolled_back recorded) but the switch back had not
    // happened: current is a release that failed; it is left for the
    // operator only if it was a good one, so here nothing is Pending and
    // current stays (the deploy flow switches back before recording).
    let s = Scratch::new("rollback");
    let (r, one, two) = one_good_then_two(&s);
    r.switch(&two).unwrap();
    // Killed between `switch(one)` writing `previous` and the rename.
    let mut meta = r.load().unwrap();
    meta.previous = Some(two.clone());
    r.save(&meta).unwrap();
    std::os::unix::fs::symlink(&one, r.root().join(CURRENT_TMP)).unwrap();
    let log = recover(&s.data);
    assert!(said(&log, &format!("switched back to {one}")), "{log:?}");
    assert_eq!(r.current(), Some(one));
}

#[test]
fn recover_a_current_whose_dir_is_gone() {
    let s = Scratch::new("gone");
    let (r, one, two) = one_good_then_two(&s);
    r.switch(&two).unwrap();
    r.set_outcome(&two, Outcome::Succeeded).unwrap();
    fs::remove_dir_all(r.dir(&two)).unwrap();
    let log = recover(&s.data);
    assert!(said(&log, "dropped metadata"), "{log:?}");
    assert_eq!(r.current(), Some(one));
}

#[test]
fn recover_leaves_an_unreadable_metadata_file_alone() {
    let s = Scratch::new("badmeta");
    let (r, one, _) = one_good_then_two(&s);
    fs::write(r.root().join(META), b"not json").unwrap();
    let log = recover(&s.data);
    assert!(said(&log, "releases left as they are"), "{log:?}");
    assert!(r.dir(&one).exists());
}

#[test]
fn releases_of_one_second_get_names_in_deploy_order() {
    let s = Scratch::new("same-second");
    let r = s.releases();
    let mut names = Vec::new();
    // the same archive twice, then one whose sha256 sorts first
    for sha in [
        format!("{:064x}", 42),
        format!("{:064x}", 42),
        "0".repeat(64),
    ] {
        let incoming = r.incoming().unwrap();
        let name = r.unused_name(&sha);
        r.commit(incoming, &name, &sha, 1).unwrap();
        names.push(name);
    }
    assert!(names[2] > names[1], "{names:?}");
    assert_ne!(names[0], names[1], "the second commit would be refused");
    assert!(names[1] > names[0], "{names:?}");
}
