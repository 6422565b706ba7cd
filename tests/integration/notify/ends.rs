//! A command target still running when exeio shuts down is ended with its
//! whole process group: no notification command outlives exeio.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;

use super::put_ok;
use crate::util::{Daemon, wait_until};

/// Whether any process is left in group `pgid`.
fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

#[test]
fn a_command_target_running_at_shutdown_is_ended_with_its_group() {
    let mut d = Daemon::start();
    let pidfile = d.tmp().join("page.pid");
    // sh writes its pid (its group's id) and waits on a long sleep: two
    // processes in the group
    let script = format!("echo $$ > {}; sleep 300; true", pidfile.display());
    put_ok(
        &d,
        &json!([{"name": "page", "command": ["sh", "-c", script]}]),
    );
    assert_eq!(d.post("/notify/test/page", "").status, 200);
    let mut pgid = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            pgid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            pgid > 0
        }),
        "the command target did not start"
    );
    assert!(group_alive(pgid));
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    let ended = wait_until(Duration::from_secs(5), || !group_alive(pgid));
    if !ended {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    assert!(ended, "the command target's group outlived exeio");
}
