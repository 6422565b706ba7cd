//! Targets that accept and never answer hold no probe worker: many of them
//! at once (each check waiting out its 30 s timeout) do not delay the
//! checks of other processes.

use std::time::Duration;

use serde_json::json;

use super::{HANG, OK, Server, service, wait_health};
use crate::util::*;

/// More hanging checks than the pool has workers, several times over.
const HANGING: usize = 24;

#[test]
fn hanging_targets_do_not_starve_other_probes() {
    let hang = Server::start(HANG);
    let good = Server::start(OK);
    let d = Daemon::start();
    for i in 0..HANGING {
        let probe = json!({"http": hang.url(), "period_seconds": 1, "timeout_seconds": 30});
        add_ok(&d, service(&format!("hang-{i}"), probe));
    }
    // let the hanging checks take their places first (at least as many as
    // the pool has workers)
    assert!(wait_until(SHORT, || hang.hits() >= 4));
    add_ok(
        &d,
        service("web", json!({"http": good.url(), "period_seconds": 1})),
    );
    // with a worker held per hanging check, it would wait behind them for
    // minutes (24 checks of 30 s over 4 workers)
    wait_health(&d, "web", "healthy", Duration::from_secs(15));
    // the hanging ones are still in their first check, untouched
    let h = status_of(&d, "hang-0");
    assert_eq!(h["status"], "running", "{h}");
    assert_eq!(h["health"], "starting", "{h}");
}
