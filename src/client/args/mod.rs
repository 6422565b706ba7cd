//! The client's command line → `Invocation` (global flags and one
//! `Command`). Pure: reads no file and sends nothing, so every request a
//! command line makes can be unit-tested. Called by `client::main` only.
//!
//! Global flags may stand anywhere before `--`; each command takes its own
//! flags the same way. After `--` everything is positional (for `add`, the
//! command and its arguments).

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{Failure, addflags};

mod admin;
mod deploy;
mod ops;

/// Flags that apply to every command.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Globals {
    /// `--url`, in the order given (several: one per host).
    pub urls: Vec<String>,
    /// `--hosts FILE`: more URLs, one a line.
    pub hosts_file: Option<PathBuf>,
    pub key: Option<String>,
    pub config_dir: Option<PathBuf>,
    pub cacert: Option<PathBuf>,
    /// Print the API's JSON as it is.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Usage, of one command or of all.
    Help(Option<&'static str>),
    Ls,
    Status(String),
    /// `health ID`: the last health checks.
    Health(String),
    Add(AddFrom),
    /// `start`, `stop`, `restart` or `rm` (the API's path verb) of some ids.
    Each(Verb, Vec<String>),
    Logs(LogsArgs),
    Input {
        id: String,
        text: String,
    },
    Run(String),
    Runs {
        id: String,
        limit: usize,
    },
    Apply(ApplyArgs),
    KeysLs,
    KeysAdd {
        name: String,
        role: String,
    },
    KeysRevoke(String),
    Shutdown,
    /// `update ID ...`: the fields to change, or a whole config.
    Update {
        id: String,
        from: UpdateFrom,
    },
    /// A request without a reply of its own to render (`clear-log`,
    /// `stop-all`, `restart-all`, `signal`): print its message.
    Post {
        path: String,
        body: Option<Value>,
    },
    /// `logs -f` without an id: every process, lines prefixed with the id.
    FollowAll {
        lines: usize,
        stream: Option<String>,
    },
    Audit {
        page: usize,
        lines: usize,
    },
    Events {
        since: Option<u64>,
    },
    Info,
    Notify(NotifyCmd),
    /// `deploy ID PATH`: a directory (packed as tar.gz) or an archive, uploaded.
    Deploy {
        id: String,
        path: PathBuf,
    },
    /// `releases ID`: the releases kept on the server.
    Releases(String),
    /// `rollback ID [RELEASE]`: back to RELEASE, or to the last good one.
    Rollback {
        id: String,
        release: Option<String>,
    },
}

/// Where `update` gets the new configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateFrom {
    /// The fields to change in the current configuration.
    Flags(Map<String, Value>),
    /// `-f FILE` (`-` = stdin): a whole configuration.
    File(PathBuf),
}

/// `logs --since`: lines from a time on.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// `10m`: this long before now.
    Ago(std::time::Duration),
    /// A time, as the log writes it (`YYYY-MM-DD HH:MM:SS`, UTC).
    At(String),
}

/// `exeio notify ls|set -f FILE|test NAME`.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyCmd {
    Ls,
    /// The whole list of targets from a file (`-` = stdin).
    Set(PathBuf),
    Test(String),
}

/// The verbs that act on each of several ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    Remove,
}

impl Verb {
    /// The API path segment: `POST /{verb}/{id}`.
    pub fn path(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Remove => "remove",
        }
    }
}

/// Where `add` gets its configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum AddFrom {
    /// Built from flags: the body of `POST /add`.
    Flags(Map<String, Value>),
    /// `-f FILE` (`-` = stdin), with the id given on the command line if any.
    File { path: PathBuf, id: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogsArgs {
    pub id: String,
    pub lines: usize,
    pub follow: bool,
    pub stream: Option<String>,
    /// `--page N`: that page of `page_size` = the line count, newest first.
    pub page: Option<usize>,
    pub since: Option<Since>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApplyArgs {
    pub path: PathBuf,
    pub prune: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub globals: Globals,
    pub command: Command,
}

/// The subcommands; anything else as a first argument is the daemon's.
pub const COMMANDS: &[&str] = &[
    "ls",
    "status",
    "health",
    "add",
    "update",
    "start",
    "stop",
    "restart",
    "rm",
    "signal",
    "logs",
    "clear-log",
    "input",
    "run",
    "runs",
    "apply",
    "stop-all",
    "restart-all",
    "keys",
    "audit",
    "events",
    "info",
    "notify",
    "deploy",
    "releases",
    "rollback",
    "shutdown",
    "help",
];

const DEFAULT_LOG_LINES: usize = 10;
const DEFAULT_RUNS: usize = 20;

/// One flag a command accepts: its names (the first is canonical) and
/// whether it takes a value.
pub(super) struct Flag {
    pub(super) names: &'static [&'static str],
    value: bool,
}

pub(super) const fn flag(names: &'static [&'static str], value: bool) -> Flag {
    Flag { names, value }
}

const GLOBAL: &[Flag] = &[
    flag(&["--url"], true),
    flag(&["--hosts"], true),
    flag(&["--key"], true),
    flag(&["--config-dir"], true),
    flag(&["--cacert"], true),
    flag(&["--json"], false),
    flag(&["--help", "-h"], false),
];

const LOGS: &[Flag] = &[
    flag(&["-n", "--lines"], true),
    flag(&["--follow", "-f"], false),
    flag(&["--stream"], true),
    flag(&["--page"], true),
    flag(&["--since"], true),
];
const RUNS: &[Flag] = &[flag(&["-n", "--limit"], true)];
const APPLY: &[Flag] = &[
    flag(&["--file", "-f"], true),
    flag(&["--prune"], false),
    flag(&["--dry-run"], false),
];

/// A command line split into flags and positional arguments.
pub(super) struct Split {
    /// (canonical name, value) of each command flag, in order.
    pub(super) flags: Vec<(&'static str, Option<String>)>,
    pub(super) positional: Vec<String>,
    /// What followed `--`, if it was there.
    pub(super) rest: Option<Vec<String>>,
}

impl Split {
    pub(super) fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }

    /// The last value given for `name`.
    pub(super) fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

pub(super) fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

/// Parse the arguments after `exeio` (the first is the subcommand).
pub fn parse(args: Vec<String>) -> Result<Invocation, Failure> {
    let mut args = args.into_iter();
    let name = args.next().unwrap_or_default();
    let Some(&name) = COMMANDS.iter().find(|c| **c == name) else {
        return Err(usage(format!("unknown command {name:?}")));
    };
    let args: Vec<String> = args.collect();
    let mut globals = Globals::default();
    let own: Vec<&'static Flag> = match name {
        "add" => addflags::flags(),
        "logs" => LOGS.iter().collect(),
        "runs" => RUNS.iter().collect(),
        "apply" => APPLY.iter().collect(),
        "keys" => admin::KEYS.iter().collect(),
        "update" => addflags::flags(),
        "audit" => ops::AUDIT.iter().collect(),
        "events" => ops::EVENTS.iter().collect(),
        "notify" => admin::NOTIFY.iter().collect(),
        _ => vec![],
    };
    let split = split(args, &own, &mut globals)?;
    let help = globals_help(&split);
    if help || name == "help" {
        let topic = if name == "help" {
            match split.positional.first() {
                None => None,
                Some(t) => Some(
                    *COMMANDS
                        .iter()
                        .find(|c| **c == t.as_str())
                        .ok_or_else(|| usage(format!("no help on {t:?}: not a command")))?,
                ),
            }
        } else {
            Some(name)
        };
        return Ok(Invocation {
            globals,
            command: Command::Help(topic),
        });
    }
    let command = command(name, split)?;
    Ok(Invocation { globals, command })
}

fn globals_help(split: &Split) -> bool {
    split.has("--help")
}

/// Sort arguments into global flags (set in `globals`), the command's flags
/// and positional arguments.
fn split(
    args: Vec<String>,
    own: &[&'static Flag],
    globals: &mut Globals,
) -> Result<Split, Failure> {
    let mut out = Split {
        flags: Vec::new(),
        positional: Vec::new(),
        rest: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            out.rest = Some(it.by_ref().collect());
            break;
        }
        let looks_like_flag = arg.len() > 1 && arg.starts_with('-') && !is_number(&arg);
        if !looks_like_flag {
            out.positional.push(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let global = GLOBAL.iter().find(|f| f.names.contains(&name.as_str()));
        let Some(f) = global.or_else(|| {
            own.iter()
                .copied()
                .find(|f| f.names.contains(&name.as_str()))
        }) else {
            return Err(usage(format!("unknown flag {name}")));
        };
        let canonical = f.names[0];
        let value = match (f.value, inline) {
            (true, Some(v)) => Some(v),
            (true, None) => Some(
                it.next()
                    .ok_or_else(|| usage(format!("{canonical} needs a value")))?,
            ),
            (false, Some(_)) => return Err(usage(format!("{canonical} takes no value"))),
            (false, None) => None,
        };
        if global.is_some() {
            set_global(globals, canonical, value, &mut out)?;
        } else {
            out.flags.push((canonical, value));
        }
    }
    Ok(out)
}

fn set_global(
    g: &mut Globals,
    name: &'static str,
    value: Option<String>,
    split: &mut Split,
) -> Result<(), Failure> {
    let v = value.unwrap_or_default();
    let nonempty = |v: String| {
        if v.trim().is_empty() {
            Err(usage(format!("{name} must not be empty")))
        } else {
            Ok(v)
        }
    };
    match name {
        "--url" => g.urls.push(nonempty(v)?),
        "--hosts" => g.hosts_file = Some(nonempty(v)?.into()),
        "--key" => g.key = Some(nonempty(v)?),
        "--config-dir" => g.config_dir = Some(nonempty(v)?.into()),
        "--cacert" => g.cacert = Some(nonempty(v)?.into()),
        "--json" => g.json = true,
        _ => split.flags.push((name, None)), // --help
    }
    Ok(())
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// Build the command from its name and its sorted arguments.
fn command(name: &'static str, s: Split) -> Result<Command, Failure> {
    let mut pos = s.positional.clone();
    if name != "add" {
        pos.extend(s.rest.clone().unwrap_or_default());
    }
    let exactly = |n: usize, what: &str| -> Result<(), Failure> {
        match pos.len().cmp(&n) {
            std::cmp::Ordering::Less => Err(usage(format!("{name} needs {what}"))),
            std::cmp::Ordering::Greater => {
                Err(usage(format!("{name}: unexpected argument {:?}", pos[n])))
            }
            std::cmp::Ordering::Equal => Ok(()),
        }
    };
    let some_ids = |pos: &[String]| -> Result<Vec<String>, Failure> {
        if pos.is_empty() {
            Err(usage(format!("{name} needs at least one ID")))
        } else {
            Ok(pos.to_vec())
        }
    };
    Ok(match name {
        "ls" => {
            exactly(0, "no argument")?;
            Command::Ls
        }
        "status" => {
            exactly(1, "an ID")?;
            Command::Status(pos.remove(0))
        }
        "health" => {
            exactly(1, "an ID")?;
            Command::Health(pos.remove(0))
        }
        "add" => Command::Add(addflags::add(s)?),
        "start" => Command::Each(Verb::Start, some_ids(&pos)?),
        "stop" => Command::Each(Verb::Stop, some_ids(&pos)?),
        "restart" => Command::Each(Verb::Restart, some_ids(&pos)?),
        "rm" => Command::Each(Verb::Remove, some_ids(&pos)?),
        "logs" if pos.is_empty() && s.has("--follow") => ops::follow_all(&s)?,
        "logs" => {
            exactly(1, "an ID")?;
            let lines = match s.value("-n") {
                Some(v) => count("-n", v)?,
                None => DEFAULT_LOG_LINES,
            };
            let stream = s.value("--stream").map(str::to_owned);
            if let Some(st) = &stream
                && !["stdout", "stderr", "system"].contains(&st.as_str())
            {
                return Err(usage(format!(
                    "--stream must be stdout, stderr or system, not {st:?}"
                )));
            }
            let (page, since) = ops::page_and_since(&s)?;
            Command::Logs(LogsArgs {
                id: pos.remove(0),
                lines,
                follow: s.has("--follow"),
                stream,
                page,
                since,
            })
        }
        "input" => {
            if pos.len() < 2 {
                return Err(usage("input needs an ID and the TEXT to send"));
            }
            let id = pos.remove(0);
            Command::Input {
                id,
                text: pos.join(" "),
            }
        }
        "run" => {
            exactly(1, "an ID")?;
            Command::Run(pos.remove(0))
        }
        "runs" => {
            exactly(1, "an ID")?;
            let limit = match s.value("-n") {
                Some(v) => positive("-n", v)?,
                None => DEFAULT_RUNS,
            };
            Command::Runs {
                id: pos.remove(0),
                limit,
            }
        }
        "apply" => {
            let path = match (s.value("--file"), pos.len()) {
                (Some(f), 0) => PathBuf::from(f),
                (None, 1) => PathBuf::from(pos.remove(0)),
                (None, 0) => return Err(usage("apply needs -f FILE|DIR")),
                _ => return Err(usage("apply takes one FILE or DIR")),
            };
            Command::Apply(ApplyArgs {
                path,
                prune: s.has("--prune"),
                dry_run: s.has("--dry-run"),
            })
        }
        "keys" => admin::keys(&s, pos)?,
        "notify" => Command::Notify(admin::notify(&s, pos)?),
        "shutdown" => {
            exactly(0, "no argument")?;
            Command::Shutdown
        }
        "update" => {
            let (id, from) = addflags::update(s)?;
            Command::Update { id, from }
        }
        "deploy" | "releases" | "rollback" => deploy::command(name, pos)?,
        "clear-log" | "stop-all" | "restart-all" | "signal" | "audit" | "events" | "info" => {
            ops::command(name, &s, pos)?
        }
        _ => return Err(usage(format!("unknown command {name:?}"))),
    })
}

pub(super) fn count(name: &str, v: &str) -> Result<usize, Failure> {
    v.parse::<usize>()
        .map_err(|_| usage(format!("{name} wants a whole number, not {v:?}")))
}

fn positive(name: &str, v: &str) -> Result<usize, Failure> {
    match count(name, v)? {
        0 => Err(usage(format!("{name} must be at least 1"))),
        n => Ok(n),
    }
}

#[cfg(test)]
pub(crate) mod tests;
