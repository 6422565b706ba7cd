//! `exeio COMMAND ...`: the command-line client of a running exeio (SPEC 3b).
//!
//! `main` parses (`args`), finds the hosts (`hosts`) and the key, then runs
//! the command against each host: one host in the foreground, several in
//! parallel threads whose output is printed in host order (`ls` merges them
//! into one table with a HOST column). Commands (`commands`, `logs`,
//! `apply`, `status`) talk HTTP through `http::Client` and render with `table`.
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 `status` of a process that is not
//! running, 4 unknown process id. Called by `main.rs` only.

pub mod addflags;
pub mod apply;
pub mod args;
pub mod commands;
pub mod deploy;
pub mod health;
pub mod hosts;
pub mod http;
pub mod logs;
pub mod notify;
pub mod ops;
pub mod pack;
pub mod progress;
mod status;
pub mod table;
pub mod tls;

use std::ffi::OsString;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use args::{Command, Invocation};
use http::{Client, Tls};
use table::Style;

/// Why a command did not succeed; each kind has its exit code.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A bad command line: exit 2.
    Usage(String),
    /// The server answered with an error status: exit 1, or 4 for a 404
    /// that names a process.
    Api {
        status: u16,
        message: String,
        field: Option<String>,
    },
    /// No answer from `url`: exit 1.
    Connect { url: String, message: String },
    /// `status` of a process that is not running: exit 3.
    NotRunning(String),
    /// Anything else, phrased for the user: exit 1.
    Other(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::NotRunning(_) => 3,
            Failure::Api {
                status: 404,
                message,
                ..
            } if message.starts_with("no process with id") => 4,
            _ => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Other(m) | Failure::NotRunning(m) => f.write_str(m),
            Failure::Api { message, .. } => f.write_str(message),
            Failure::Connect { url, message } => {
                write!(f, "cannot reach exeio at {url}: {message}")
            }
        }
    }
}

/// What a command printed and how it went, for one host.
#[derive(Debug, Default)]
pub struct Report {
    pub out: String,
    pub errors: Vec<Failure>,
}

impl Report {
    pub fn fail(&mut self, f: Failure) {
        self.errors.push(f);
    }

    /// The exit code: that of the first failure.
    pub fn code(&self) -> u8 {
        self.errors.first().map_or(0, Failure::code)
    }
}

/// What every command gets.
pub struct Ctx<'a> {
    pub client: &'a Client,
    pub style: Style,
    pub json: bool,
    /// Prefix of streamed lines (several hosts).
    pub label: Option<&'a str>,
}

/// The arguments as the client's (the command first) if they name a
/// command: first, or after client flags only (`exeio --json ls`). `None`:
/// they are the daemon's.
pub fn client_args(args: &[OsString]) -> Option<Vec<OsString>> {
    let mut i = 0;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        if args::COMMANDS.contains(&a) {
            let mut out = vec![args[i].clone()];
            out.extend_from_slice(&args[..i]);
            out.extend_from_slice(&args[i + 1..]);
            return Some(out);
        }
        let name = a.split_once('=').map_or(a, |(n, _)| n);
        i += match name {
            "--json" => 1,
            "--url" | "--key" | "--hosts" | "--cacert" | "--config-dir" if a.contains('=') => 1,
            "--url" | "--key" | "--hosts" | "--cacert" | "--config-dir" => 2,
            _ => return None,
        };
    }
    None
}

pub fn main(raw: Vec<OsString>) -> ExitCode {
    let mut words = Vec::with_capacity(raw.len());
    for a in raw {
        match a.into_string() {
            Ok(s) => words.push(s),
            Err(a) => return usage_error(None, &format!("argument {a:?} is not UTF-8")),
        }
    }
    let name = words.first().cloned().unwrap_or_default();
    let Invocation { globals, command } = match args::parse(words) {
        Ok(inv) => inv,
        Err(f) => return usage_error(Some(&name), &f.to_string()),
    };
    if let Command::Help(topic) = command {
        print(&help(topic));
        return ExitCode::SUCCESS;
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let urls = match hosts::urls(&globals, env("EXEIO_URL")) {
        Ok(u) => u,
        Err(f) => return fail_once(&f),
    };
    let key = hosts::key(&globals, env("EXEIO_API_KEY"));
    let https = urls.iter().any(|u| u.starts_with("https://"));
    let cacert = globals
        .cacert
        .clone()
        .or_else(|| env("EXEIO_CACERT").map(std::path::PathBuf::from));
    let tls = match (https, cacert.as_deref()) {
        (false, None) => Tls::none(),
        (_, cacert) => match Tls::load(cacert) {
            Ok(t) => t,
            Err(f) => return fail_once(&f),
        },
    };
    let style = Style::detect(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let clients: Vec<Client> = urls
        .iter()
        .map(|u| Client::new(u, key.clone(), &tls))
        .collect();
    let code = run(&command, &clients, style, globals.json, key.is_none());
    ExitCode::from(code)
}

/// Run `command` on every host; the exit code.
fn run(command: &Command, clients: &[Client], style: Style, json: bool, keyless: bool) -> u8 {
    let many = clients.len() > 1;
    let ctx = |c: &'_ Client| -> Report {
        let ctx = Ctx {
            client: c,
            style,
            json,
            label: many.then_some(c.url.as_str()),
        };
        commands::run(command, &ctx)
    };
    if let Command::Ls = command
        && many
        && !json
    {
        let lists: Vec<Result<Vec<serde_json::Value>, Failure>> = parallel(clients, commands::list);
        let (out, errors) = commands::ls_many(clients, lists, style);
        print(&out);
        return report_errors(clients, &errors, many, keyless);
    }
    let reports: Vec<Report> = if many {
        parallel(clients, ctx)
    } else {
        vec![ctx(&clients[0])]
    };
    let mut code = 0;
    for (c, r) in clients.iter().zip(&reports) {
        if json && many {
            for line in r.out.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or(serde_json::Value::String(line.into()));
                print(&format!(
                    "{}\n",
                    serde_json::json!({"host": c.url, "response": v})
                ));
            }
        } else if many && !r.out.is_empty() {
            print(&format!("==> {} <==\n{}", c.url, r.out));
        } else {
            print(&r.out);
        }
        let errs: Vec<(usize, Failure)> = r.errors.iter().cloned().map(|f| (0, f)).collect();
        let _ = report_errors(std::slice::from_ref(c), &errs, many, keyless);
        if code == 0 {
            code = r.code();
        }
    }
    code
}

/// Print each (host index, failure) on stderr; the first one's exit code.
fn report_errors(clients: &[Client], errors: &[(usize, Failure)], many: bool, keyless: bool) -> u8 {
    let mut stderr = std::io::stderr().lock();
    for (i, f) in errors {
        if let Failure::NotRunning(_) = f {
            continue; // `status` says so with its exit code (LSB), not as an error
        }
        let host = match f {
            Failure::Connect { .. } => String::new(),
            _ if many => format!("{}: ", clients[*i].url),
            _ => String::new(),
        };
        let hint = match f {
            Failure::Api { status: 401, .. } if keyless => {
                " (no key was sent: pass --key, set EXEIO_API_KEY, or use --config-dir DIR \
                 where DIR/api-key is readable)"
            }
            _ => "",
        };
        let _ = writeln!(stderr, "exeio: error: {host}{f}{hint}");
    }
    errors.first().map_or(0, |(_, f)| f.code())
}

/// `f` on every client at once, results in client order.
fn parallel<T: Send>(clients: &[Client], f: impl Fn(&Client) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = clients.iter().map(|c| s.spawn(|| f(c))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Write to stdout; a closed pipe (`exeio ls | head -1`) is not an error.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn fail_once(f: &Failure) -> ExitCode {
    let _ = writeln!(std::io::stderr().lock(), "exeio: error: {f}");
    ExitCode::from(f.code())
}

fn usage_error(command: Option<&str>, msg: &str) -> ExitCode {
    let see = match command {
        Some(c) if args::COMMANDS.contains(&c) && c != "help" => format!("exeio help {c}"),
        _ => "exeio help".to_owned(),
    };
    let _ = writeln!(
        std::io::stderr().lock(),
        "exeio: error: {msg} (see '{see}')"
    );
    ExitCode::from(2)
}

pub const USAGE: &str = "\
exeio COMMAND: talk to a running exeio

Usage: exeio COMMAND [ARGS] [FLAGS]

Commands:
  ls                          list the processes
  status ID                   one process in detail (exit 3 if it is not running)
  health ID                   a process's health and its last checks
  add ID [FLAGS] -- CMD ARGS  add a process and start it (or: add -f FILE)
  update ID [FLAGS]           change some fields of its config (or: update ID -f FILE)
  start|stop|restart ID...    act on one or more processes
  rm ID...                    stop and forget processes (their logs stay)
  signal ID SIG               send a signal (HUP, USR1, ...) to its group, no restart
  logs ID [-n N] [-f]         the last N lines (default 10), oldest first; -f follows
                              [--page N] [--since 10m|TIME]; logs -f: every process
  clear-log ID                empty a process's log
  input ID TEXT               write TEXT and a newline to the process's stdin
  run ID                      run a periodic or scheduled job now
  runs ID [-n N]              a job's last N runs (default 20)
  apply -f FILE|DIR           make exeio match a configuration [--prune] [--dry-run]
  stop-all, restart-all       act on every process
  keys ls|add|revoke          the named API keys
  audit [-n N] [--page N]     the audit log (admin)
  events [--since ID]         every change as it happens, one line each
  info                        exeio's version, uptime and endpoints
  notify ls|set -f FILE|test NAME  notification targets (webhooks, commands)
  deploy ID PATH              upload a release (a directory or .tar.gz) and switch to it
  releases ID                 the releases kept, the current one marked
  rollback ID [RELEASE]       back to RELEASE, or to the last good release
  shutdown                    stop every process and exeio itself
  help [COMMAND]              this help, or a command's

Flags of every command:
  --url URL        exeio's address; repeat for several hosts
                   (default $EXEIO_URL, else http://127.0.0.1:8080)
  --hosts FILE     more hosts: one URL a line, # comments
  --key KEY        the API key; else $EXEIO_API_KEY, else <config-dir>/api-key
  --config-dir DIR where the local key file is (default $XDG_CONFIG_HOME/exeio
                   or ~/.config/exeio)
  --cacert FILE    trust this CA, or this very server certificate (PEM),
                   for https:// URLs (default $EXEIO_CACERT)
  --json           print the API's JSON as is (one answer a line)
  -h, --help       help

Exit codes: 0 ok, 1 error, 2 usage error, 3 not running (status), 4 unknown id.
Run 'exeio --help' for the daemon's own flags.
";

/// The help of one command, or of all.
pub fn help(topic: Option<&str>) -> String {
    let text = match topic {
        Some(t) if ops::help(t).is_some() => ops::help(t).unwrap_or_default(),
        Some(t) if deploy::help(t).is_some() => deploy::help(t).unwrap_or_default(),
        Some("ls") => {
            "Usage: exeio ls\n\n\
             A table of the processes: ID, STATUS, HEALTH, PID, UPTIME, RESTARTS\n\
             (restarts in a row, as the dashboard), CPU, RSS, NEXT RUN, LAST EXIT, SAVED\n\
             (saved for the next start). With several hosts, one table with a HOST column.\n"
        }
        Some("status") => {
            "Usage: exeio status ID\n\n\
             One process in detail. Exit 0 if it is running, 3 if not, 4 if there is\n\
             no such process.\n"
        }
        Some("add") => {
            "Usage: exeio add ID [FLAGS] -- COMMAND [ARGS...]\n\
             \x20      exeio add [ID] -f FILE      (a JSON config; - reads stdin)\n\n\
             Flags (each sets one config field; absent fields take the server's default):\n\
             \x20 --cwd, --working-dir DIR   working_dir\n\
             \x20 -e, --env NAME=VALUE       env (repeat for more)\n\
             \x20 --restart POLICY           restart_policy: always, on-failure or never\n\
             \x20 --auto-restart             auto_restart: true\n\
             \x20 --save                     save_for_next_run: true\n\
             \x20 --periodic SECS            periodic: true, period_seconds: SECS\n\
             \x20 --schedule EXPR            schedule (cron), --timezone TZ: timezone\n\
             \x20 --max-restarts N           max_restarts\n\
             \x20 --stop-signal SIG          stop_signal (TERM, INT, ...)\n\
             \x20 --stop-timeout SECS        stop_timeout_seconds\n\
             \x20 --log-max-bytes SIZE       log_max_bytes (10485760, 512K, 10M)\n\
             \x20 --log-backups N            log_backups\n\
             \x20 --max-memory SIZE          max_memory_bytes (restart above it: 512M, 2G)\n\
             \x20 --backoff S1,S2,...        backoff_seconds (the last one repeats)\n\
             \x20 --backoff-reset SECS       backoff_reset_seconds\n\
             \x20 --rapid-exit-penalty SECS  rapid_exit_penalty_seconds\n\
             \x20 --user USER, --group GROUP user, group\n\
             \x20 --overlap skip|queue|replace, --timeout SECS, --history N   (jobs)\n\
             \x20 --catch-up, --catch-up-window SECS   catch_up (calendar jobs)\n\
             \x20 --env-file FILE           env_file: KEY=value lines read at each start\n\
             \x20 --instances N              instances: N copies ID-1..ID-N ({instance}, EXEIO_INSTANCE)\n\
             \x20 --no-auto-restart, --no-save, --no-catch-up   (for update)\n\n\
             Example: exeio add web --save --auto-restart -- python3 -m http.server 8000\n"
        }
        Some("start" | "stop" | "restart" | "rm") => {
            "Usage: exeio start|stop|restart|rm ID...\n\n\
             Act on each ID in turn; the others go on if one fails. stop waits for the\n\
             exit; rm stops, forgets the process and drops it from the saved config\n\
             (its log file stays).\n"
        }
        Some("logs") => {
            "Usage: exeio logs ID [-n N] [-f] [--stream stdout|stderr|system]\n\
             \x20      exeio logs -f [-n N] [--stream S]   (every process, lines prefixed with the id)\n\n\
             \x20 -n, --lines N   how many of the last lines (default 10), oldest first\n\
             \x20 -f, --follow    then print new lines as they are written (Ctrl-C ends)\n\
             \x20 --stream S      only the lines of stdout, stderr or system\n\
             \x20 --page N        page N of -n lines (1 = the newest), oldest first\n\
             \x20 --since T       every line since T: 90s, 10m, 2h, 1d or a UTC time\n\
             \x20                 (2026-12-07 10:00:00, or RFC 3339); with -f, then follow\n"
        }
        Some("input") => {
            "Usage: exeio input ID TEXT...\n\n\
             Write TEXT (words joined by spaces) and a newline to the process's stdin.\n\
             Put -- before a TEXT that starts with '-'.\n"
        }
        Some("health") => {
            "Usage: exeio health ID\n\n\
             A process's health (none, starting, healthy, unhealthy), its probe,\n\
             and its last checks, newest first.\n"
        }
        Some("run") => {
            "Usage: exeio run ID\n\nRun a periodic or scheduled job now (its overlap policy applies).\n"
        }
        Some("runs") => {
            "Usage: exeio runs ID [-n N]\n\n\
             The last N runs of a periodic or scheduled job (default 20), newest first.\n"
        }
        Some("apply") => {
            "Usage: exeio apply -f FILE|DIR [--prune] [--dry-run]\n\n\
             Make exeio match a configuration: add what is new, update what changed\n\
             (restarting only when what the process is started with changed), leave\n\
             the rest alone. FILE holds one config object, an array of them, or\n\
             {\"processes\": [...]}; DIR holds *.json files of those (read in name\n\
             order). Validated as a whole first: one bad entry changes nothing.\n\
             \x20 --prune     remove saved processes that the configuration lacks\n\
             \x20 --dry-run   only print what would change\n"
        }
        Some("keys") => {
            "Usage: exeio keys ls\n\
             \x20      exeio keys add NAME --role read|operate|admin   (prints the key once)\n\
             \x20      exeio keys revoke NAME\n\n\
             read: ls, status, logs, runs; operate: also start, stop, restart, input,\n\
             run; admin: everything.\n"
        }
        Some("shutdown") => "Usage: exeio shutdown\n\nStop every process, then exeio itself.\n",
        Some("notify") => {
            "Usage: exeio notify ls\n\
             \x20      exeio notify set -f FILE   (FILE: a JSON list of targets; - = stdin)\n\
             \x20      exeio notify test NAME\n\n\
             Where exeio sends alerts (process.failed, job.failed, process.oom, ...):\n\
             webhooks signed per Standard Webhooks, or commands fed the event on stdin.\n\
             A secret exeio makes is printed once by set. Admin keys only.\n"
        }
        _ => return USAGE.to_owned(),
    };
    format!(
        "{text}\nFlags of every command: --url URL, --hosts FILE, --key KEY, --config-dir DIR,\n--cacert FILE, --json (see 'exeio help').\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn client_or_daemon() {
        assert_eq!(client_args(&os(&["ls"])), Some(os(&["ls"])));
        assert_eq!(
            client_args(&os(&["--json", "--url", "h:1", "status", "web"])),
            Some(os(&["status", "--json", "--url", "h:1", "web"]))
        );
        assert_eq!(
            client_args(&os(&["--config-dir=/c", "ls"])),
            Some(os(&["ls", "--config-dir=/c"]))
        );
        for daemon in [
            &[][..],
            &["--port", "0"],
            &["--config-dir", "/c"],
            &["--config-dir", "ls"],
            &["-P", "8080", "ls"],
            &["--help"],
            &["--url"],
        ] {
            assert_eq!(client_args(&os(daemon)), None, "{daemon:?}");
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Failure::Usage("x".into()).code(), 2);
        assert_eq!(Failure::NotRunning("x".into()).code(), 3);
        assert_eq!(
            Failure::Connect {
                url: "u".into(),
                message: "m".into()
            }
            .to_string(),
            "cannot reach exeio at u: m"
        );
        let mut r = Report::default();
        assert_eq!(r.code(), 0);
        r.fail(Failure::Api {
            status: 404,
            message: "no process with id 'x'".into(),
            field: None,
        });
        r.fail(Failure::Other("later".into()));
        assert_eq!(r.code(), 4, "the first failure decides");
    }
}
