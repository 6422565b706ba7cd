use super::*;
use testutil::{Tmp, clear, file, reopen, write_numbered};

/// Checked at compile time: HTTP workers share a `LogFile`; a `Pump` moves
/// to its child's thread and a `Follower` to an HTTP worker.
const _: () = {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    let _ = shared::<LogFile>;
    let _ = sent::<(Pump, Follower)>;
};

#[test]
fn sighup_recounts_a_file_changed_in_place() {
    let t = Tmp::new("copytruncate");
    let log = t.log(1 << 20, 2);
    write_numbered(&log, 10);
    assert_eq!(log.total_lines(), 10);
    // logrotate copytruncate: the file is emptied in place, then SIGHUP
    fs::OpenOptions::new()
        .write(true)
        .open(log.path())
        .unwrap()
        .set_len(0)
        .unwrap();
    reopen(&log);
    log.system("after truncation");
    assert_eq!(log.total_lines(), 1);
}

#[test]
fn total_lines_after_reopen_and_external_rotation() {
    let t = Tmp::new("reopen");
    let log = t.log(1000, 2);
    write_numbered(&log, 70);
    let log = t.log(1000, 2);
    assert_eq!(log.total_lines(), 70);
    reopen(&log);
    log.system("same file");
    assert_eq!(log.total_lines(), 71);
    reopen(&log); // logrotate: rename, then SIGHUP
    fs::rename(log.path(), backup(log.path(), 1)).unwrap();
    log.system("new file");
    assert_eq!(log.total_lines(), 19 + 26 + 1);
    assert_eq!(log.page_lines(1, 2).unwrap().1.len(), 2);
}

#[test]
fn clear_removes_everything() {
    let t = Tmp::new("clear");
    let log = t.log(1000, 2);
    write_numbered(&log, 70);
    clear(&log).unwrap();
    assert_eq!(log.total_lines(), 0);
    assert!(log.page_lines(1, 10).unwrap().1.is_empty());
    assert!(!backup(log.path(), 1).exists());
    log.system("fresh");
    assert_eq!(file(log.path()), ["SYSTEM: fresh"]);
    assert_eq!(log.total_lines(), 1);
}
