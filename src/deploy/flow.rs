//! The deploy and rollback flow (SPEC 4c), after the upload is on disk:
//! verify, extract, commit, build, switch, restart, health gate, and on a
//! failed gate one switch back (never a second: no ping-pong).
//!
//! Runs on the request's connection thread, never on the supervisor's: a
//! deploy may take the build's 600 s plus the gate's 60 s. The supervisor
//! still owns every process: the flow asks it to restart or stop one
//! (`Call`, as an HTTP request would) and watches the published `View`,
//! woken by the event bus (state and health events), with the gate's
//! verdict computed by `gate` (pure). Lines for a process's log are queued
//! for that log's owner (`Logger::post`), never written here.
//!
//! One deploy or rollback per process at a time: `Deployer::lock`, whose
//! guard the handler drops before it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use serde_json::json;

use super::build::{self, BuildError};
use super::gate::{Gate, Sample, Verdict};
use super::{ExtractError, Limits, Outcome, Owner, Releases, Temp, extract, release_name};
use crate::error::ApiError;
use crate::events::Bus;
use crate::lifecycle::Health;
use crate::logger::Logger;
use crate::logs::{Op, Stream};
use crate::notify::{Kind, Notice, Notifier};
use crate::protocol::{Call, Msg};
use crate::spec::{ProcessId, ProcessSpec};
use crate::timefmt::rfc3339;
use crate::view::Published;

/// Entries an extracted release may have at most (SPEC 4c).
pub const MAX_ENTRIES: u64 = 100_000;
/// How long the supervisor may take to carry out a restart or stop
/// (the longest grace period plus slack), as for an HTTP request.
const REPLY_WAIT: Duration = Duration::from_secs(crate::spec::MAX_STOP_TIMEOUT_SECONDS + 60);

/// The deploys of every process: the caps, who is deploying, the counts.
pub struct Deployer {
    pub data_dir: PathBuf,
    /// `--max-deploy-bytes`: the cap of an upload.
    pub max_deploy_bytes: u64,
    /// `--max-release-bytes`: the cap of what it extracts to.
    pub max_release_bytes: u64,
    busy: Mutex<BTreeSet<ProcessId>>,
    counts: Mutex<BTreeMap<(ProcessId, &'static str), u64>>,
}

/// A process's deploy lock; released on drop.
pub struct Lock<'d> {
    d: &'d Deployer,
    id: ProcessId,
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        lock(&self.d.busy).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Deployer {
    pub fn new(data_dir: PathBuf, max_deploy_bytes: u64, max_release_bytes: u64) -> Deployer {
        Deployer {
            data_dir,
            max_deploy_bytes,
            max_release_bytes,
            busy: Mutex::default(),
            counts: Mutex::default(),
        }
    }

    /// Take `id`'s deploy lock, or say who holds it (409).
    pub fn lock(&self, id: &ProcessId) -> Result<Lock<'_>, ApiError> {
        if !lock(&self.busy).insert(id.clone()) {
            return Err(ApiError::Conflict(format!(
                "a deploy or rollback of '{id}' is in progress: try again when it is done"
            )));
        }
        Ok(Lock {
            d: self,
            id: id.clone(),
        })
    }

    /// `exeio_deploys_total`: (id, outcome, count).
    pub fn counts(&self) -> Vec<(ProcessId, &'static str, u64)> {
        lock(&self.counts)
            .iter()
            .map(|((id, o), n)| (id.clone(), *o, *n))
            .collect()
    }

    fn count(&self, id: &ProcessId, outcome: &'static str) {
        *lock(&self.counts).entry((id.clone(), outcome)).or_default() += 1;
    }

    pub fn releases(&self, id: &ProcessId) -> Result<Releases, ApiError> {
        Releases::open(&self.data_dir, id.as_str())
            .map_err(|e| storage("open the releases dir", &e))
    }
}

/// The parts of exeio the flow talks to.
pub struct Env<'a> {
    pub tx: &'a Sender<Msg>,
    pub published: &'a Published,
    pub events: &'a Bus,
    pub logger: &'a Logger,
    pub notifier: &'a Notifier,
    pub deployer: &'a Deployer,
}

/// How a deploy or rollback ended, for the reply.
#[derive(Debug)]
pub enum Ended {
    /// 200: `release` is live and passed the gate.
    Live {
        release: String,
        previous: Option<String>,
    },
    /// 409: `release` failed the gate; `back_to` is live again (or none).
    RolledBack {
        message: String,
        release: String,
        back_to: Option<String>,
        /// `back_to` passed the gate again (else exeio stopped there).
        recovered: bool,
    },
}

impl Ended {
    /// The outcome of the `deploy` event and metric.
    fn outcome(&self) -> &'static str {
        match self {
            Ended::Live { .. } => "succeeded",
            Ended::RolledBack {
                recovered: true, ..
            } => "rolled_back",
            Ended::RolledBack { .. } => "failed",
        }
    }
}

/// The deploy settings of a process (`deploy` in its config).
struct Settings {
    keep: usize,
    build: Option<Vec<String>>,
    build_timeout: Duration,
    healthy_timeout: Duration,
}

fn settings(spec: &ProcessSpec) -> Settings {
    let d = spec.deploy.as_deref().cloned().unwrap_or_default();
    Settings {
        keep: d.keep as usize,
        build: d.build,
        build_timeout: d.build_timeout,
        healthy_timeout: d.healthy_timeout,
    }
}

impl Env<'_> {
    /// The rest of a deploy once the body is in `upload` (hashed): the
    /// sha256 check, extract, commit, build, then `switch_and_gate`.
    pub fn deploy(
        &self,
        spec: &ProcessSpec,
        rel: &Releases,
        upload: Temp,
        sha256: &str,
        bytes: u64,
        expected: Option<&str>,
    ) -> Result<Ended, ApiError> {
        let id = &spec.id;
        let result = self.deploy_steps(spec, rel, upload, sha256, bytes, expected);
        let outcome = result.as_ref().map_or("failed", Ended::outcome);
        let release = match &result {
            Ok(Ended::Live { release, .. } | Ended::RolledBack { release, .. }) => release.clone(),
            Err(_) => release_name(SystemTime::now(), sha256),
        };
        if let Err(e) = &result {
            self.logger
                .supervisor(format!("deploy of '{id}' refused: {e}"));
        }
        self.ended(id, &release, outcome);
        result
    }

    fn deploy_steps(
        &self,
        spec: &ProcessSpec,
        rel: &Releases,
        upload: Temp,
        sha256: &str,
        bytes: u64,
        expected: Option<&str>,
    ) -> Result<Ended, ApiError> {
        let id = &spec.id;
        if let Some(want) = expected
            && want != sha256
        {
            return Err(ApiError::BadRequest(format!(
                "the upload's sha256 is {sha256}, not the {want} of X-Exeio-SHA256: nothing was deployed"
            )));
        }
        let incoming = rel
            .incoming()
            .map_err(|e| storage("make the incoming dir", &e))?;
        let limits = Limits {
            max_bytes: self.deployer.max_release_bytes,
            max_entries: MAX_ENTRIES,
        };
        let owner = owner_of(spec)?;
        let got = extract(upload.path(), incoming.path(), &limits, owner.as_ref())
            .map_err(extract_error)?;
        drop(upload);
        let name = rel.unused_name(sha256);
        let dir = rel
            .commit(incoming, &name, sha256, bytes)
            .map_err(|e| storage("commit the release", &e))?;
        self.system(
            id,
            format!(
                "deploy: release {name} received ({bytes} bytes, {} entries, {} bytes extracted)",
                got.files, got.bytes
            ),
        );
        let s = settings(spec);
        if let Some(argv) = &s.build
            && let Err(e) = self.build(spec, &dir, argv, s.build_timeout)
        {
            let _ = rel.set_outcome(&name, Outcome::Failed);
            return Err(ApiError::Unprocessable(format!(
                "{e}: release {name} was not switched to (kept for inspection in {})",
                dir.display()
            )));
        }
        // Back to what is live if it passed its gate, else to the newest
        // release that did (names sort by time only to the second).
        let fallback = rel
            .current()
            .filter(|c| passed(rel, c))
            .or_else(|| rel.last_good(Some(&name)));
        self.switch_and_gate(spec, rel, &name, fallback, &s)
    }

    /// `POST /rollback`: switch to `target` (default: the newest earlier
    /// release that passed the gate) and gate it; back to what was live
    /// if it fails (when that had passed the gate).
    pub fn rollback(
        &self,
        spec: &ProcessSpec,
        rel: &Releases,
        target: Option<String>,
    ) -> Result<Ended, ApiError> {
        let id = &spec.id;
        let current = rel.current();
        let target = match target {
            Some(t) => {
                if !rel.list().iter().any(|r| r.release == t) {
                    return Err(ApiError::NotFound(format!(
                        "'{id}' has no release {t} (GET /releases/{id} lists them)"
                    )));
                }
                t
            }
            None => rel.last_good(None).ok_or_else(|| {
                ApiError::Conflict(format!(
                    "'{id}' has no earlier release that passed its health gate to roll back to"
                ))
            })?,
        };
        let fallback = current.filter(|c| *c != target && passed(rel, c));
        let result = self.switch_and_gate(spec, rel, &target, fallback, &settings(spec));
        let outcome = result.as_ref().map_or("failed", Ended::outcome);
        self.ended(id, &target, outcome);
        result
    }

    /// Switch `current` to `name`, restart, gate. On a failed gate: back to
    /// `fallback`, restart, gate once more, and stop there.
    fn switch_and_gate(
        &self,
        spec: &ProcessSpec,
        rel: &Releases,
        name: &str,
        fallback: Option<String>,
        s: &Settings,
    ) -> Result<Ended, ApiError> {
        let id = &spec.id;
        let previous = rel.current();
        rel.switch(name)
            .map_err(|e| storage("switch the current release", &e))?;
        self.system(
            id,
            format!(
                "deploy: switched to release {name} (was {}); restarting",
                previous.as_deref().unwrap_or("none")
            ),
        );
        let verdict = self.restart_and_gate(id, s.healthy_timeout);
        let why = match verdict {
            Ok(()) => {
                let _ = rel.set_outcome(name, Outcome::Succeeded);
                self.system(
                    id,
                    format!("deploy: release {name} is healthy: it stays live"),
                );
                for gone in rel.prune(s.keep) {
                    self.system(
                        id,
                        format!("deploy: old release {gone} removed (keep {})", s.keep),
                    );
                }
                return Ok(Ended::Live {
                    release: name.to_owned(),
                    previous,
                });
            }
            Err(why) => why,
        };
        let secs = s.healthy_timeout.as_secs();
        let failed = format!("release {name} did not become healthy in {secs} s ({why})");
        if rel.get(name).is_some_and(|r| r.outcome == Outcome::Pending) {
            let _ = rel.set_outcome(name, Outcome::RolledBack);
        }
        let Some(back) = fallback else {
            return Ok(self.nothing_to_go_back_to(spec, rel, name, failed, previous.as_deref()));
        };
        rel.switch(&back).map_err(|e| storage("switch back", &e))?;
        self.system(id, format!("deploy: {failed}; rolling back to {back}"));
        match self.restart_and_gate(id, s.healthy_timeout) {
            Ok(()) => {
                self.system(id, format!("deploy: rolled back to {back}: healthy again"));
                Ok(Ended::RolledBack {
                    message: format!("{failed}; rolled back to {back}"),
                    release: name.to_owned(),
                    back_to: Some(back),
                    recovered: true,
                })
            }
            Err(why2) => {
                let message = format!(
                    "{failed}; rolled back to {back}, which is not healthy either ({why2}): \
                     exeio stops there and leaves it running"
                );
                self.system(id, format!("deploy: {message}"));
                self.alert(id, &message, name, Some(&back));
                Ok(Ended::RolledBack {
                    message,
                    release: name.to_owned(),
                    back_to: Some(back),
                    recovered: false,
                })
            }
        }
    }

    /// A failed gate with no release to go back to: a first deploy is
    /// stopped and `current` unlinked; otherwise it keeps running.
    fn nothing_to_go_back_to(
        &self,
        spec: &ProcessSpec,
        rel: &Releases,
        name: &str,
        failed: String,
        previous: Option<&str>,
    ) -> Ended {
        let id = &spec.id;
        let message = if previous.is_none() {
            let _ = rel.set_outcome(name, Outcome::Failed);
            let _ = self.ask(Call::Stop(id.clone()));
            let _ = rel.unlink_current();
            format!(
                "{failed}; no earlier release to roll back to: '{id}' is stopped, release {name} kept for inspection"
            )
        } else {
            format!("{failed}; no earlier healthy release to roll back to: exeio leaves it running")
        };
        self.system(id, format!("deploy: {message}"));
        self.alert(id, &message, name, None);
        Ended::RolledBack {
            message,
            release: name.to_owned(),
            back_to: None,
            recovered: false,
        }
    }

    /// Restart `id` through the supervisor and wait for the gate's verdict.
    fn restart_and_gate(&self, id: &ProcessId, timeout: Duration) -> Result<(), String> {
        let mut sub = self.events.subscribe(None);
        let started = Instant::now();
        self.ask(Call::Restart(id.clone()))
            .map_err(|e| e.to_string())?;
        let view = self.published.load();
        let Some(p) = view.get(id.as_str()) else {
            return Err("the process was removed".into());
        };
        let gate = Gate {
            probed: p.health != Health::None,
            deadline: started + timeout,
            pid: p.pid,
        };
        drop(view);
        loop {
            let view = self.published.load();
            let Some(p) = view.get(id.as_str()) else {
                return Err("the process was removed".into());
            };
            let sample = Sample {
                status: p.status,
                pid: p.pid,
                started: p.started,
                health: p.health,
                health_message: p.health_message.clone(),
                why_down: why_down(p),
            };
            drop(view);
            match gate.judge(&sample, Instant::now()) {
                Verdict::Healthy => return Ok(()),
                Verdict::Unhealthy(why) => return Err(why),
                Verdict::Wait(until) => match sub.queue.recv_deadline(until) {
                    Ok(_) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    // Fell behind and was dropped: a new subscription.
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        sub = self.events.subscribe(None);
                    }
                },
            }
        }
    }

    /// Run the build in `dir`, its output into the process log.
    fn build(
        &self,
        spec: &ProcessSpec,
        dir: &Path,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(), BuildError> {
        let id = &spec.id;
        let log = self
            .published
            .load()
            .get(id.as_str())
            .map(|p| p.log.clone());
        self.system(
            id,
            format!(
                "deploy: build started in {}: {}",
                dir.display(),
                argv.join(" ")
            ),
        );
        // As a run of the new release would see it ({release}, its env), but
        // always in the release's dir.
        let mut run_spec = super::resolve::with_release(spec, dir);
        run_spec.working_dir = Some(dir.to_path_buf());
        let t0 = Instant::now();
        let result = build::run(&run_spec, argv, timeout, &mut |stream, text| {
            if let Some(log) = &log {
                let tag = match stream {
                    Stream::Stdout => "STDOUT",
                    Stream::Stderr => "STDERR",
                };
                self.logger
                    .post(log, Op::Raw(format!("{tag}: [build] {text}")));
            }
        });
        let took = t0.elapsed().as_secs_f64();
        match &result {
            Ok(()) => self.system(id, format!("deploy: build succeeded in {took:.1} s")),
            Err(e) => self.system(id, format!("deploy: {e} after {took:.1} s")),
        }
        result
    }

    /// Send `call` to the supervisor and wait for its answer.
    fn ask(&self, call: Call) -> Result<(), ApiError> {
        let (tx, rx) = bounded(1);
        self.tx
            .send(Msg::Call(call, tx))
            .map_err(|_| ApiError::Unavailable("exeio is shutting down".into()))?;
        match rx.recv_timeout(REPLY_WAIT) {
            Ok(reply) => reply.map(|_| ()),
            Err(RecvTimeoutError::Timeout) => Err(ApiError::Unavailable(
                "the supervisor did not answer in time".into(),
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Err(ApiError::Unavailable("exeio is shutting down".into()))
            }
        }
    }

    /// A SYSTEM line in `id`'s log (queued for its owner).
    fn system(&self, id: &ProcessId, line: String) {
        if let Some(p) = self.published.load().get(id.as_str()) {
            self.logger.system(&p.log, line);
        }
    }

    /// The `deploy` event, the metric and exeio.log.
    fn ended(&self, id: &ProcessId, release: &str, outcome: &'static str) {
        self.deployer.count(id, outcome);
        self.events.publish(
            "deploy",
            &json!({"id": id.as_str(), "release": release, "outcome": outcome, "at": rfc3339(SystemTime::now())}),
        );
        self.logger
            .supervisor(format!("deploy of '{id}': release {release} {outcome}"));
    }

    fn alert(&self, id: &ProcessId, message: &str, release: &str, back_to: Option<&str>) {
        self.notifier.send(Notice::new(
            Kind::DeployFailed,
            id.as_str(),
            message.to_owned(),
            json!({"release": release, "rolled_back_to": back_to}),
        ));
    }
}

/// Did release `name` pass its gate?
fn passed(rel: &Releases, name: &str) -> bool {
    rel.get(name)
        .is_some_and(|r| r.outcome == Outcome::Succeeded)
}

/// Why a process is down, for a gate's message.
fn why_down(p: &crate::view::ProcView) -> Option<String> {
    if let Some(e) = &p.error {
        return Some(e.clone());
    }
    p.last_exit.as_ref().map(|(status, _)| match status {
        crate::policy::ExitStatus::Code(c) => format!("it exited with code {c}"),
        crate::policy::ExitStatus::Signal(s) => format!("it was killed by signal {s}"),
    })
}

/// Whom the extracted files belong to: the process's user, if it has one.
fn owner_of(spec: &ProcessSpec) -> Result<Option<Owner>, ApiError> {
    let Some(user) = &spec.user else {
        return Ok(None);
    };
    crate::users::resolve(user, spec.group.as_deref())
        .map(|ids| {
            Some(Owner {
                uid: ids.uid,
                gid: ids.gid,
            })
        })
        .map_err(|e| ApiError::BadRequest(format!("cannot deploy as user {user}: {e}")))
}

fn extract_error(e: ExtractError) -> ApiError {
    let m = format!("{e}: nothing was deployed");
    match e.status() {
        400 => ApiError::BadRequest(m),
        413 => ApiError::TooLarge(m),
        507 => ApiError::InsufficientStorage(m),
        _ => ApiError::Internal(m),
    }
}

/// A failed write on the data dir: 507 when the disk is full.
pub fn storage(what: &str, e: &std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        ApiError::InsufficientStorage(format!("cannot {what}: the disk is full ({e})"))
    } else {
        ApiError::Internal(format!("cannot {what}: {e}"))
    }
}
