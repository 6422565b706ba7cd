//! Start-up and shutdown, in order: inherited fds, dirs, lock, limits, keys,
//! socket, cgroups (and the sweep of what a killed predecessor left), saved
//! state, signal thread, logger, persister, HTTP server, supervisor (on this
//! thread, which lives as long as any child); then stop and join
//! everything. The only place that starts long-lived threads.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::unbounded;

use crate::api::{Api, Counts, Sessions, Throttle};
use crate::child::cgroup::Cgroups;
use crate::cli::Config;
use crate::diag;
use crate::error::{Error, Result};
use crate::events::Bus;
use crate::http::{self, EdgeStats, Limits};
use crate::instance::Instance;
use crate::keys::{Keys, Origin};
use crate::logger::Logger;
use crate::logs::{LogConfig, LogFile};
use crate::paths::Paths;
use crate::persist::Persister;
use crate::signals;
use crate::spec::ProcessId;
use crate::store::{Loaded, RunsFile, Store};
use crate::supervisor::{Setup, Supervisor};
use crate::sys;
use crate::view::Published;

pub fn run(cfg: Config) -> Result<()> {
    sys::cloexec_inherited_fds();
    crate::child::reserve_slots();
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let paths = Paths::resolve(&cfg)?;
    paths.create()?;
    let _instance = Instance::acquire(&paths.lock(), &paths.config_dir)?;
    let fd_limit = sys::raise_fd_limit().ok();
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = TcpListener::bind(&addr).map_err(|source| Error::Bind {
        addr: addr.clone(),
        source,
    })?;
    sys::listen_backlog(&listener, 4096);
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        addr: addr.clone(),
        source,
    })?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls::load(cert, key).map_err(Error::Other)?),
        _ => None,
    };
    // Before any process starts: a deploy that exeio died in is finished
    // or undone (SPEC 4c), so each `current` names a complete release.
    let recovered = crate::deploy::recover(&paths.data_dir);
    let store = Store::new(paths.store());
    let loaded = store.load().map_err(Error::io("read", paths.store()))?;
    let runs = load_runs(&paths, &loaded);
    let boot_apply = match &cfg.apply_dir {
        Some(dir) => Some((dir.clone(), crate::applydir::load(dir)?)),
        None => None,
    };
    // Last of what can fail before the banner: a key generated now is shown
    // now (a start that fails earlier, on a port in use, generates none).
    let keys = Arc::new(Keys::load(&cfg, &paths.key_file(), &paths.keys_file())?);
    let (cgroups, no_cgroups) = if cfg.cgroups {
        match Cgroups::detect(&paths.config_dir) {
            Ok(c) => (Some(Arc::new(c)), None),
            Err(why) => (None, Some(why)),
        }
    } else {
        (None, Some("--no-cgroups".to_owned()))
    };
    let swept = cgroups.as_ref().map(|c| c.sweep()).unwrap_or_default();
    let siblings = cgroups.as_ref().map_or(0, |c| c.remove_empty_siblings());

    let (tx, rx) = unbounded();
    let signals = signals::start(tx.clone()).map_err(Error::start("the signal thread"))?;
    let exeio_log = Arc::new(LogFile::new(paths.exeio_log(), LogConfig::default()));
    let audit_log = Arc::new(LogFile::new(paths.audit_log(), LogConfig::default()));
    let (logger, logger_thread) =
        Logger::start(exeio_log, audit_log.clone()).map_err(Error::start("the logger thread"))?;
    let (persister, persister_thread) =
        Persister::start(tx.clone()).map_err(Error::start("the persister thread"))?;
    let notifier = crate::notify::start(
        crate::notify::Places {
            config: paths.notify_file(),
            queue: paths.notify_queue(),
        },
        logger.clone(),
    )
    .map_err(Error::Other)?;
    let published = Arc::new(Published::default());
    let events = Arc::new(Bus::new(started_wall));
    let edge = Arc::new(EdgeStats::default());
    let isolation = if cgroups.is_some() {
        "cgroup"
    } else {
        "process-group"
    };
    let api = Arc::new(Api {
        tx: tx.clone(),
        published: published.clone(),
        keys: keys.clone(),
        sessions: Sessions::default(),
        throttle: Throttle::new(cfg.auth_fail_limit, cfg.auth_fail_window),
        logger: logger.clone(),
        audit_log,
        events: events.clone(),
        edge: edge.clone(),
        counts: Counts::default(),
        started,
        started_wall,
        tls: tls.is_some(),
        isolation,
        stopping: AtomicBool::new(false),
        notify: notifier.clone(),
        audit_summary: Default::default(),
        deployer: Arc::new(crate::deploy::flow::Deployer::new(
            paths.data_dir.clone(),
            cfg.max_deploy_bytes,
            cfg.max_release_bytes,
        )),
    });
    let limits = Limits {
        max_connections: cfg.max_connections,
        max_per_address: cfg.max_per_address,
        head_timeout: cfg.head_timeout,
        idle_timeout: cfg.idle_timeout,
        body_timeout: cfg.head_timeout,
        write_timeout: cfg.write_timeout,
        trusted: cfg.trusted_proxies.clone(),
        proxy_protocol: cfg.proxy_protocol,
    };
    let report = {
        let logger = logger.clone();
        Box::new(move |msg: String| logger.supervisor(msg))
    };
    let setup = Setup {
        tx: tx.clone(),
        rx,
        logger: logger.clone(),
        logs_dir: paths.logs_dir.clone(),
        runs_dir: paths.runs_dir(),
        store,
        persister,
        published,
        events,
        cgroups: cgroups.clone(),
        notifier,
        probes: crate::health::Probes::start(crate::health::THREADS, tx.clone())
            .map_err(Error::start("the health probe threads"))?,
        data_dir: paths.data_dir.clone(),
    };
    drop(tx);
    let mut supervisor = Supervisor::new(setup);
    for line in &swept {
        logger.supervisor(line.clone());
    }
    if siblings > 0 {
        logger.supervisor(format!(
            "removed {siblings} empty cgroup(s) of other exeio instances beside {}",
            cgroups
                .as_ref()
                .map_or(String::new(), |c| c.base().display().to_string())
        ));
    }
    report_loaded(&loaded, &paths, &logger);
    for line in recovered {
        logger.supervisor(line);
    }
    supervisor.start_saved(loaded, runs);
    let server = http::start(listener, tls, limits, api.clone(), edge, report)
        .map_err(Error::start("the HTTP server"))?;

    let scheme = if api.tls { "https" } else { "http" };
    diag::say(&format!("exeio listening on {scheme}://{bound}"));
    announce_key(&keys);
    diag::say(&format!("Logs directory: {}", paths.logs_dir.display()));
    diag::say(&format!("Config file: {}", paths.store().display()));
    match (&cgroups, &no_cgroups) {
        (Some(c), _) => diag::say(&format!(
            "Process isolation: cgroup ({}): nothing a process starts outlives it",
            c.base().display()
        )),
        (None, why) => diag::say(&format!(
            "Process isolation: process groups ({}): a daemon that leaves its group can outlive a stop",
            why.as_deref().unwrap_or("")
        )),
    }
    if let Some(w) = cleartext_warning(bound, api.tls) {
        diag::warn(&w);
    }
    logger.supervisor(format!(
        "exeio {} started on {scheme}://{bound} ({isolation} isolation, fd limit {})",
        env!("CARGO_PKG_VERSION"),
        fd_limit.map_or("unknown".into(), |n| n.to_string())
    ));
    for line in swept {
        diag::warn(&line);
    }
    if let Some((dir, specs)) = boot_apply {
        crate::applydir::send(&api.tx, dir, specs, logger.clone());
    }
    supervisor.run();

    api.stopping.store(true, Ordering::SeqCst);
    server.stop();
    if let Err(e) = keys.save() {
        diag::warn(&e);
    }
    let _ = persister_thread.join();
    if let Some(c) = &cgroups {
        c.close();
    }
    signals.handle.close();
    let _ = signals.thread.join();
    logger.supervisor("exeio stopped".into());
    diag::say("exeio: stopped: every process is stopped, logs flushed");
    drop(api);
    drop(logger);
    let _ = wait_for(logger_thread, Duration::from_secs(5));
    Ok(())
}

/// Keys must not cross a network in cleartext: say so when they would.
fn cleartext_warning(bound: std::net::SocketAddr, tls: bool) -> Option<String> {
    (!tls && !bound.ip().is_loopback()).then(|| {
        format!(
            "{bound} is not a loopback address and TLS is off: API keys travel in cleartext \
             (use --tls-cert/--tls-key, or a TLS proxy)"
        )
    })
}

/// Join a thread, but not for ever (a connection thread may still hold a
/// logger handle while its client dawdles).
fn wait_for(t: std::thread::JoinHandle<()>, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while !t.is_finished() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    t.join().is_ok()
}

fn announce_key(keys: &Keys) {
    match &keys.origin {
        Origin::Generated(path) => {
            diag::say(&format!("API Key: {}", keys.admin_secret()));
            diag::say(&format!(
                "(generated and saved to {}; it is not printed again)",
                path.display()
            ));
        }
        Origin::Flag => diag::say("API key: from --api-key"),
        Origin::Env => diag::say("API key: from EXEIO_API_KEY"),
        Origin::File(path) => diag::say(&format!("API key: from file {}", path.display())),
    }
    diag::say(&key_note());
}

/// Which paths need a key, from the route table (so it cannot drift).
fn key_note() -> String {
    format!(
        "NOTE: the API needs a key in the 'exeio-api-key' header (all but {})",
        crate::api::routes::open_paths().join(", ")
    )
}

fn report_loaded(loaded: &Loaded, paths: &Paths, logger: &Logger) {
    if let Some((aside, why)) = &loaded.moved_aside {
        let msg = format!(
            "{} did not parse ({why}); moved it to {} and started with no saved processes",
            paths.store().display(),
            aside.display()
        );
        diag::warn(&msg);
        logger.supervisor(msg);
    }
    for skipped in &loaded.skipped {
        let msg = format!("saved process skipped: {skipped}");
        diag::warn(&msg);
        logger.supervisor(msg);
    }
}

/// The run histories of the saved jobs.
fn load_runs(paths: &Paths, loaded: &Loaded) -> BTreeMap<ProcessId, RunsFile> {
    loaded
        .processes
        .iter()
        .filter(|s| s.spec.is_job())
        .filter_map(|s| {
            let path = paths.runs_dir().join(format!("{}.json", s.spec.id));
            let bytes = std::fs::read(path).ok()?;
            Some((s.spec.id.clone(), RunsFile::parse(&bytes)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_of_cleartext_off_loopback_only() {
        let at = |s: &str| s.parse().unwrap();
        assert!(cleartext_warning(at("0.0.0.0:8080"), false).is_some());
        assert!(cleartext_warning(at("192.168.1.5:8080"), false).is_some());
        assert!(cleartext_warning(at("[::]:8080"), false).is_some());
        assert!(cleartext_warning(at("0.0.0.0:8080"), true).is_none());
        assert!(cleartext_warning(at("127.0.0.1:8080"), false).is_none());
        assert!(cleartext_warning(at("[::1]:8080"), false).is_none());
    }
}
