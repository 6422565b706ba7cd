//! Start-up and shutdown, in order: dirs, lock, key, socket, store, signal
//! thread, logger, HTTP workers, supervisor (on this thread, which lives as
//! long as any child); then join everything. The only place that starts
//! long-lived threads.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

use crossbeam_channel::unbounded;

use crate::auth::{ApiKey, Origin};
use crate::cli::Config;
use crate::diag;
use crate::error::{Error, Result};
use crate::http::{self, Api};
use crate::instance::Instance;
use crate::logger::Logger;
use crate::logs::{LogConfig, LogFile};
use crate::paths::Paths;
use crate::signals;
use crate::store::Store;
use crate::supervisor::Supervisor;

/// HTTP worker threads. Each may block on one slow client's body, so there
/// are more than cores; an idle worker costs a few KiB.
const HTTP_WORKERS: usize = 4;

pub fn run(cfg: Config) -> Result<()> {
    let started = Instant::now();
    let paths = Paths::resolve(&cfg)?;
    paths.create()?;
    let _instance = Instance::acquire(&paths.lock(), &paths.config_dir)?;
    let key = ApiKey::load(&cfg, &paths.key_file())?;
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = TcpListener::bind(&addr).map_err(|source| Error::Bind {
        addr: addr.clone(),
        source,
    })?;
    crate::child::no_delay(&listener);
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        addr: addr.clone(),
        source,
    })?;
    let store = Store::new(paths.store());
    let loaded = store.load().map_err(Error::io("read", paths.store()))?;

    let (tx, rx) = unbounded();
    let signals = signals::start(tx.clone())
        .map_err(|e| Error::Other(format!("cannot watch signals: {e}")))?;
    let exeio_log = Arc::new(LogFile::new(paths.exeio_log(), LogConfig::default()));
    let (logger, logger_thread) = Logger::start(exeio_log)
        .map_err(|e| Error::Other(format!("cannot start the logger: {e}")))?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| Error::Other(format!("cannot start the HTTP server: {e}")))?;

    diag::say(&format!("exeio listening on http://{bound}"));
    match &key.origin {
        Origin::Generated(path) => {
            diag::say(&format!("API Key: {}", key.secret()));
            diag::say(&format!(
                "(generated and saved to {}; it is not printed again)",
                path.display()
            ));
        }
        Origin::Flag => diag::say("API key: from --api-key"),
        Origin::Env => diag::say("API key: from EXEIO_API_KEY"),
        Origin::File(path) => diag::say(&format!("API key: from file {}", path.display())),
    }
    diag::say("NOTE: all endpoints except /info need the 'exeio-api-key' header with that key");
    diag::say(&format!("Logs directory: {}", paths.logs_dir.display()));
    diag::say(&format!("Config file: {}", paths.store().display()));
    logger.supervisor(format!(
        "exeio {} started on http://{bound}",
        env!("CARGO_PKG_VERSION")
    ));
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

    let api = Arc::new(Api {
        server: Arc::new(server),
        key,
        tx: tx.clone(),
        started,
        stopping: AtomicBool::new(false),
        slow: AtomicUsize::new(0),
    });
    let workers = http::start_workers(api.clone(), HTTP_WORKERS)
        .map_err(|e| Error::Other(format!("cannot start HTTP workers: {e}")))?;
    drop(tx);

    Supervisor::new(
        api.tx.clone(),
        rx,
        logger.clone(),
        paths.logs_dir.clone(),
        store,
    )
    .run(loaded);

    http::stop_workers(&api, workers);
    signals.handle.close();
    let _ = signals.thread.join();
    logger.supervisor("exeio stopped".into());
    drop(logger);
    let _ = logger_thread.join();
    Ok(())
}
