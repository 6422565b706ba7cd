use super::*;

pub(crate) fn parse_str(args: &[&str]) -> Result<Invocation, Failure> {
    parse(args.iter().map(|s| s.to_string()).collect())
}

pub(crate) fn cmd(args: &[&str]) -> Command {
    parse_str(args)
        .unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
        .command
}

#[test]
fn bad_command_lines_are_usage_errors() {
    // One command line a line, words split on spaces; '' is an empty word.
    let bad = "add web|add web true|add -- true|add w --restart sometimes -- true
        |add w --env NOEQUALS -- true|add w --max-restarts -1 -- true
        |add w --backoff 1,x -- true|add w --log-max-bytes 10X -- true
        |add w --save=yes -- true|ls extra|ls --bogus|status|status a b|stop
        |logs x -n ten|logs x --stream stdin|logs|input x|runs x -n 0|apply|apply a b
        |keys|keys add ci|keys add ci --role root|keys revoke|keys rotate|shutdown now
        |ls --url|ls --url ''|help nonsense|nonsense";
    for line in bad.split('|') {
        let words: Vec<&str> = line
            .split_whitespace()
            .map(|w| if w == "''" { "" } else { w })
            .collect();
        let got = parse_str(&words);
        assert!(matches!(got, Err(Failure::Usage(_))), "{words:?}: {got:?}");
    }
}

#[test]
fn the_other_commands() {
    assert_eq!(cmd(&["ls"]), Command::Ls);
    assert_eq!(cmd(&["status", "web"]), Command::Status("web".into()));
    assert_eq!(
        cmd(&["stop", "a", "b", "c"]),
        Command::Each(Verb::Stop, vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(
        cmd(&["rm", "a"]),
        Command::Each(Verb::Remove, vec!["a".into()])
    );
    assert_eq!(
        cmd(&["logs", "web", "-n", "3", "-f", "--stream", "stderr"]),
        Command::Logs(LogsArgs {
            id: "web".into(),
            lines: 3,
            follow: true,
            stream: Some("stderr".into()),
            page: None,
            since: None,
        })
    );
    assert_eq!(
        cmd(&["logs", "web"]),
        Command::Logs(LogsArgs {
            id: "web".into(),
            lines: 10,
            follow: false,
            stream: None,
            page: None,
            since: None,
        })
    );
    assert_eq!(
        cmd(&["input", "web", "hello", "world"]),
        Command::Input {
            id: "web".into(),
            text: "hello world".into()
        }
    );
    assert_eq!(
        cmd(&["input", "web", "--", "-n"]),
        Command::Input {
            id: "web".into(),
            text: "-n".into()
        }
    );
    assert_eq!(
        cmd(&["input", "web", "-1"]),
        Command::Input {
            id: "web".into(),
            text: "-1".into()
        }
    );
    assert_eq!(cmd(&["run", "job"]), Command::Run("job".into()));
    assert_eq!(
        cmd(&["runs", "job", "-n", "5"]),
        Command::Runs {
            id: "job".into(),
            limit: 5
        }
    );
    assert_eq!(
        cmd(&["apply", "-f", "conf.d", "--prune", "--dry-run"]),
        Command::Apply(ApplyArgs {
            path: "conf.d".into(),
            prune: true,
            dry_run: true
        })
    );
    assert_eq!(
        cmd(&["apply", "one.json"]),
        Command::Apply(ApplyArgs {
            path: "one.json".into(),
            prune: false,
            dry_run: false
        })
    );
    assert_eq!(cmd(&["keys", "ls"]), Command::KeysLs);
    assert_eq!(
        cmd(&["keys", "add", "ci", "--role", "read"]),
        Command::KeysAdd {
            name: "ci".into(),
            role: "read".into()
        }
    );
    assert_eq!(
        cmd(&["keys", "revoke", "ci"]),
        Command::KeysRevoke("ci".into())
    );
    assert_eq!(cmd(&["shutdown"]), Command::Shutdown);
}

#[test]
fn globals_and_help() {
    let inv = parse_str(&[
        "ls",
        "--url",
        "http://a:1",
        "--url=https://b:2",
        "--key",
        "k",
        "--config-dir",
        "/c",
        "--cacert",
        "ca.pem",
        "--hosts",
        "hosts.txt",
        "--json",
    ])
    .unwrap();
    assert_eq!(
        inv.globals,
        Globals {
            urls: vec!["http://a:1".into(), "https://b:2".into()],
            hosts_file: Some("hosts.txt".into()),
            key: Some("k".into()),
            config_dir: Some("/c".into()),
            cacert: Some("ca.pem".into()),
            json: true,
        }
    );
    assert_eq!(cmd(&["help"]), Command::Help(None));
    assert_eq!(cmd(&["help", "logs"]), Command::Help(Some("logs")));
    assert_eq!(cmd(&["logs", "--help"]), Command::Help(Some("logs")));
    assert_eq!(cmd(&["add", "-h"]), Command::Help(Some("add")));
    assert_eq!(cmd(&["keys", "--help"]), Command::Help(Some("keys")));
    // after --, --help belongs to the child's command line
    assert!(matches!(
        cmd(&["add", "x", "--", "ls", "--help"]),
        Command::Add(_)
    ));
}
