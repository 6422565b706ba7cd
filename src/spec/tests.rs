use super::*;

fn req(json: &str) -> Result<ProcessSpec, String> {
    parse_add(json.as_bytes()).map_err(|e| format!("{}: {}", e.field, e.message))
}

#[test]
fn ids() {
    for good in ["a", "web-server", "A.b_c-9", &"x".repeat(64)] {
        assert!(ProcessId::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        ".hidden",
        "..",
        "a/b",
        "a b",
        "é",
        "a\0b",
        "exeio",
        "audit",
        &"x".repeat(65),
    ] {
        assert!(ProcessId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn defaults() {
    let s = req(r#"{"id":"a","command":"sleep"}"#).unwrap();
    assert_eq!(s.args, Vec::<String>::new());
    assert_eq!(s.restart_policy, RestartPolicy::Never);
    assert_eq!(s.stop_signal.number(), 15);
    assert_eq!(s.stop_timeout_seconds, 10);
    assert_eq!(s.log_max_bytes, 50 * 1024 * 1024);
    assert_eq!(s.log_backups, 5);
    let s = req(r#"{"id":"a","command":"sleep","auto_restart":true}"#).unwrap();
    assert_eq!(s.restart_policy, RestartPolicy::Always);
}

#[test]
fn seed_body_with_nulls_is_accepted() {
    let s = req(
        r#"{"id":"my-process","command":"node","args":["server.js"],"working_dir":"/app",
        "auto_restart":true,"save_for_next_run":true,"periodic":false,"period_seconds":null}"#,
    )
    .unwrap();
    assert_eq!(s.period_seconds, None);
}

#[test]
fn rejects() {
    let unknown = req(r#"{"id":"a","command":"x","colour":1}"#).unwrap_err();
    assert!(unknown.contains("colour"), "{unknown}");
    assert!(req(r#"{"id":"a"}"#).unwrap_err().contains("command"));
    assert!(req(r#"{"id":"a","command":"  "}"#).is_err());
    assert!(req(r#"{"id":"a","command":"x","args":"y"}"#).is_err());
    assert!(req(r#"{"id":"a","command":"x","periodic":true}"#).is_err());
    assert!(req(r#"{"id":"a","command":"x","periodic":true,"period_seconds":0}"#).is_err());
    assert!(req(r#"{"id":"a","command":"x","periodic":true,"period_seconds":-1}"#).is_err());
    assert!(
        req(r#"{"id":"a","command":"x","periodic":true,"period_seconds":99999999999}"#).is_err()
    );
    assert!(req(r#"{"id":"a","command":"x","stop_signal":"BOGUS"}"#).is_err());
    assert!(req(r#"{"id":"a","command":"x","restart_policy":"sometimes"}"#).is_err());
    assert!(req("{not json").is_err());
    assert!(req(r#"["a","sleep"]"#).unwrap_err().contains("object"));
}

#[test]
fn periodic_never_restarts() {
    let s =
        req(r#"{"id":"a","command":"x","periodic":true,"period_seconds":5,"auto_restart":true}"#)
            .unwrap();
    assert_eq!(s.restart_policy, RestartPolicy::Never);
    assert_eq!(s.period_seconds, Some(5));
}

#[test]
fn signals() {
    assert_eq!(StopSignal::parse("SIGINT").unwrap().number(), 2);
    assert_eq!(StopSignal::parse("KILL").unwrap().number(), 9);
    assert_eq!(StopSignal::parse("9").unwrap().number(), 9);
    for bad in ["kill", " TERM", "SIG15", "SIGSIGTERM", ""] {
        assert!(StopSignal::parse(bad).is_err(), "{bad:?}");
    }
    for ok in StopSignal::accepted() {
        assert!(StopSignal::parse(&ok).is_ok(), "{ok}");
    }
    assert_eq!(StopSignal::parse("15").unwrap().name(), "TERM");
}

#[test]
fn restart_timing_and_user_fields() {
    let s = req(r#"{"id":"a","command":"x","backoff_seconds":[0.1,0.5,1],
        "backoff_reset_seconds":60,"rapid_exit_penalty_seconds":0,"user":"nobody"}"#)
    .unwrap();
    assert_eq!(
        s.backoff.steps,
        Some(vec![
            Duration::from_millis(100),
            Duration::from_millis(500),
            Duration::from_secs(1)
        ])
    );
    assert_eq!(s.backoff.reset, Duration::from_secs(60));
    assert_eq!(s.backoff.penalty, Duration::ZERO);
    assert_eq!(s.user.as_deref(), Some("nobody"));
    let d = req(r#"{"id":"a","command":"x"}"#).unwrap();
    assert_eq!(d.backoff, Backoff::default());
    for (bad, field) in [
        (r#""backoff_seconds":[]"#, "backoff_seconds"),
        (r#""backoff_seconds":[-1]"#, "backoff_seconds"),
        (r#""backoff_seconds":[1e9]"#, "backoff_seconds"),
        (r#""backoff_reset_seconds":-5"#, "backoff_reset_seconds"),
        (
            r#""rapid_exit_penalty_seconds":-0.5"#,
            "rapid_exit_penalty_seconds",
        ),
        (r##""user":"""##, "user"),
        (r#""group":"wheel""#, "group"),
        (r#""overlap":"queue""#, "overlap"),
        (r#""history":5"#, "history"),
        (
            r#""periodic":true,"period_seconds":5,"timeout_seconds":0"#,
            "timeout_seconds",
        ),
        (r#""colour":1"#, "colour"),
    ] {
        let e = parse_add(format!(r#"{{"id":"a","command":"x",{bad}}}"#).as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{bad}: {}", e.message);
    }
    let j = req(
        r#"{"id":"a","command":"x","periodic":true,"period_seconds":5,
        "overlap":"replace","timeout_seconds":3,"history":7}"#,
    )
    .unwrap();
    assert_eq!(j.job.overlap, Overlap::Replace);
    assert_eq!(j.job.timeout, Some(Duration::from_secs(3)));
    assert_eq!(j.job.history, 7);
    assert_eq!(validate(j.to_request()).unwrap(), j);
}

#[test]
fn what_needs_a_restart() {
    let a = req(r#"{"id":"a","command":"x","args":["1"]}"#).unwrap();
    let policy = req(r#"{"id":"a","command":"x","args":["1"],"auto_restart":true,
        "log_backups":2,"stop_timeout_seconds":3}"#)
    .unwrap();
    assert!(!a.needs_restart_for(&policy));
    for other in [
        r#"{"id":"a","command":"y","args":["1"]}"#,
        r#"{"id":"a","command":"x","args":["2"]}"#,
        r#"{"id":"a","command":"x","args":["1"],"env":{"A":"1"}}"#,
        r#"{"id":"a","command":"x","args":["1"],"working_dir":"/"}"#,
        r#"{"id":"a","command":"x","args":["1"],"user":"root"}"#,
    ] {
        assert!(a.needs_restart_for(&req(other).unwrap()), "{other}");
    }
}

#[test]
fn round_trip_through_the_wire_form() {
    let s = req(r#"{"id":"a","command":"x","env":{"A":"1"},"max_restarts":3,"stop_signal":"INT"}"#)
        .unwrap();
    assert_eq!(validate(s.to_request()).unwrap(), s);
}

#[test]
fn a_bad_value_is_named_by_its_field() {
    let e = parse_add(br#"{"id":"x","command":"true","restart_policy":"sometimes"}"#).unwrap_err();
    assert_eq!(e.field, "restart_policy");
    assert!(
        e.message.starts_with("restart_policy: unknown variant"),
        "{}",
        e.message
    );
    let e = request(serde_json::json!({"id": "x", "command": 5})).unwrap_err();
    assert_eq!(e.field, "command");
}
