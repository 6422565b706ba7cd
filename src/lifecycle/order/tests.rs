//! The order's decisions, with the processes described in place.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::lifecycle::{Input, Now, Status, Want};
use crate::spec::{AddRequest, validate};

fn id(s: &str) -> ProcessId {
    ProcessId::parse(s).unwrap()
}

fn deps(pairs: &[(&str, Condition)]) -> DependsOn {
    pairs.iter().map(|(d, c)| (id(d), *c)).collect()
}

/// `(id, has_probe, deps)` → the graph `check` takes.
fn graph<'a>(g: &'a [(&str, bool, DependsOn)]) -> BTreeMap<ProcessId, Node<'a>> {
    g.iter()
        .map(|(i, p, d)| {
            (
                id(i),
                Node {
                    deps: d,
                    has_probe: *p,
                },
            )
        })
        .collect()
}

use Condition::{CompletedSuccessfully as Done, Healthy, Started};

#[test]
fn a_valid_graph_passes() {
    let g = [
        ("db", true, deps(&[])),
        ("migrate", false, deps(&[("db", Healthy)])),
        ("web", false, deps(&[("db", Healthy), ("migrate", Done)])),
        ("worker", false, deps(&[("web", Started)])),
    ];
    let all: Vec<ProcessId> = g.iter().map(|(i, _, _)| id(i)).collect();
    assert_eq!(check(&graph(&g), &all), Ok(()));
}

#[test]
fn unknown_ids_are_named() {
    let g = [("web", false, deps(&[("db", Started), ("cache", Started)]))];
    let err = check(&graph(&g), &[id("web")]).unwrap_err();
    assert_eq!(
        err,
        OrderError::Unknown {
            process: id("web"),
            missing: vec![id("cache"), id("db")]
        }
    );
    assert_eq!(
        err.to_string(),
        "depends_on: process 'web' depends on unknown processes 'cache', 'db'"
    );
}

#[test]
fn cycles_are_named_as_a_path() {
    let g = [
        ("a", false, deps(&[("b", Started)])),
        ("b", false, deps(&[("c", Started)])),
        ("c", false, deps(&[("a", Started)])),
        ("d", false, deps(&[("a", Started)])),
    ];
    let err = check(&graph(&g), &[id("c")]).unwrap_err();
    assert_eq!(
        err,
        OrderError::Cycle(vec![id("c"), id("a"), id("b"), id("c")])
    );
    assert_eq!(
        err.to_string(),
        "depends_on: a dependency cycle: c -> a -> b -> c"
    );
    // d is on no cycle, but a change to it alone reaches one it is not part of.
    assert_eq!(check(&graph(&g), &[id("d")]), Ok(()));
    // A self-dependency is a cycle too (spec validation refuses it first).
    let g = [("a", false, deps(&[("a", Started)]))];
    assert_eq!(
        check(&graph(&g), &[id("a")]),
        Err(OrderError::Cycle(vec![id("a"), id("a")]))
    );
}

#[test]
fn a_long_chain_is_no_cycle_and_does_not_recurse() {
    let n = 20_000;
    let g: Vec<(String, DependsOn)> = (0..n)
        .map(|i| {
            let d = if i + 1 < n {
                deps(&[(&format!("p{}", i + 1), Started)])
            } else {
                DependsOn::new()
            };
            (format!("p{i}"), d)
        })
        .collect();
    let nodes: BTreeMap<ProcessId, Node<'_>> = g
        .iter()
        .map(|(i, d)| {
            (
                id(i),
                Node {
                    deps: d,
                    has_probe: false,
                },
            )
        })
        .collect();
    assert_eq!(check(&nodes, &[id("p0")]), Ok(()));
}

#[test]
fn healthy_needs_a_probe_on_either_side_of_a_change() {
    let g = [
        ("db", false, deps(&[])),
        ("web", false, deps(&[("db", Healthy)])),
    ];
    let no_probe = OrderError::NoProbe {
        process: id("web"),
        dependency: id("db"),
    };
    assert_eq!(check(&graph(&g), &[id("web")]), Err(no_probe.clone()));
    // The dependency changed (its probe removed by an update).
    assert_eq!(check(&graph(&g), &[id("db")]), Err(no_probe.clone()));
    assert!(no_probe.to_string().contains("'db' has no health probe"));
    let g = [
        ("db", true, deps(&[])),
        ("web", false, deps(&[("db", Healthy)])),
    ];
    assert_eq!(check(&graph(&g), &[id("web"), id("db")]), Ok(()));
}

#[test]
fn unmet_conditions_read_like_the_spec() {
    let d = deps(&[("db", Healthy), ("migrate", Done), ("cache", Started)]);
    let running = Facts {
        running: true,
        ..Facts::default()
    };
    let facts = |i: &ProcessId| match i.as_str() {
        "db" => Some(running),
        "migrate" => Some(Facts {
            succeeded: true,
            ..Facts::default()
        }),
        _ => None,
    };
    assert_eq!(
        unmet(&d, facts),
        [
            "cache (started): there is no process 'cache'",
            "db (healthy)"
        ]
    );
    assert!(unmet(&DependsOn::new(), facts).is_empty());
    assert!(
        Facts {
            running: true,
            healthy: true,
            succeeded: false
        }
        .meets(Healthy)
    );
    assert!(
        !Facts {
            running: false,
            healthy: true,
            succeeded: false
        }
        .meets(Healthy)
    );
    assert!(!running.meets(Done));
}

#[test]
fn dependents_are_found() {
    let web = deps(&[("db", Started)]);
    let worker = deps(&[("db", Healthy), ("web", Started)]);
    let none = DependsOn::new();
    let (w, k, d) = (id("web"), id("worker"), id("db"));
    let all = [(&d, &none), (&w, &web), (&k, &worker)];
    assert_eq!(dependents(all, &d), [w.clone(), k.clone()]);
    assert_eq!(dependents(all, &w), vec![id("worker")]);
    assert!(dependents(all, &id("worker")).is_empty());
}

#[test]
fn stop_levels_put_dependents_first() {
    let db = DependsOn::new();
    let migrate = deps(&[("db", Healthy)]);
    let web = deps(&[("db", Healthy), ("migrate", Done)]);
    let worker = deps(&[("web", Started)]);
    let other = DependsOn::new();
    let nodes: BTreeMap<ProcessId, &DependsOn> = [
        (id("db"), &db),
        (id("migrate"), &migrate),
        (id("web"), &web),
        (id("worker"), &worker),
        (id("other"), &other),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        stop_levels(&nodes),
        vec![
            vec![id("other"), id("worker")],
            vec![id("web")],
            vec![id("migrate")],
            vec![id("db")]
        ]
    );
    // A cycle still ends: its members come last, together.
    let a = deps(&[("b", Started)]);
    let b = deps(&[("a", Started)]);
    let nodes: BTreeMap<ProcessId, &DependsOn> =
        [(id("a"), &a), (id("b"), &b)].into_iter().collect();
    assert_eq!(stop_levels(&nodes), vec![vec![id("a"), id("b")]]);
}

#[test]
fn a_dependency_stops_once_its_busy_dependents_are_gone() {
    let db = DependsOn::new();
    let web = deps(&[("db", Started)]);
    let node = |d, busy| Stopping { deps: d, busy };
    let queued: BTreeSet<ProcessId> = [id("db")].into_iter().collect();
    // web is still stopping: db waits.
    let nodes = [(id("db"), node(&db, true)), (id("web"), node(&web, true))]
        .into_iter()
        .collect();
    assert!(ready_to_stop(&queued, &nodes).is_empty());
    // web has exited (or is not being stopped: the user started it again).
    let nodes = [(id("db"), node(&db, true)), (id("web"), node(&web, false))]
        .into_iter()
        .collect();
    assert_eq!(ready_to_stop(&queued, &nodes), [id("db")]);
    // Both queued, in a cycle, nothing else busy: all go (never wait forever).
    let a = deps(&[("b", Started)]);
    let b = deps(&[("a", Started)]);
    let queued: BTreeSet<ProcessId> = [id("a"), id("b")].into_iter().collect();
    let nodes = [(id("a"), node(&a, true)), (id("b"), node(&b, true))]
        .into_iter()
        .collect();
    assert_eq!(ready_to_stop(&queued, &nodes), [id("a"), id("b")]);
}

fn now0() -> Now {
    Now {
        at: Instant::now(),
        wall: SystemTime::now(),
    }
}

fn hold(p: &mut Proc, waiting_for: Vec<String>) -> Vec<Effect> {
    p.step(Input::Hold { waiting_for }, now0()).unwrap()
}

fn release(p: &mut Proc, unmet: Vec<String>) -> Vec<Effect> {
    p.step(Input::Release { unmet }, now0()).unwrap()
}

fn proc_with(extra: AddRequest) -> Proc {
    let spec = validate(AddRequest {
        id: "web".into(),
        command: "sleep".into(),
        ..extra
    })
    .unwrap();
    Proc::new(spec, Want::UP)
}

#[test]
fn a_held_start_waits_then_spawns() {
    let t0 = now0();
    let mut p = proc_with(AddRequest::default());
    assert_eq!(p.step(Input::Start, t0).unwrap(), [Effect::Spawn]);
    let fx = hold(&mut p, vec!["db (started)".into()]);
    assert_eq!(fx, [Effect::Log("waiting for db (started)".into())]);
    assert_eq!(p.status(), Status::Waiting);
    assert_eq!(p.waiting_for(), ["db (started)"]);
    assert_eq!(p.deadline(), None, "held: no timer, only events release it");
    // Held again (a job's tick, a second start): no second line.
    assert!(hold(&mut p, vec!["db (started)".into()]).is_empty());
    // Still unmet: the list is updated, nothing spawns.
    assert!(release(&mut p, vec!["db (healthy)".into()]).is_empty());
    assert_eq!(p.waiting_for(), ["db (healthy)"]);
    let fx = release(&mut p, vec![]);
    assert_eq!(fx.last(), Some(&Effect::Spawn));
    p.step(Input::Spawned { pid: 42 }, t0).unwrap();
    assert_eq!(p.status(), Status::Running);
    assert_eq!(p.restarts_total, 0, "a first start is no restart");
    assert!(p.waiting_for().is_empty());
}

#[test]
fn a_held_start_can_be_stopped_removed_and_shut_down() {
    let t0 = now0();
    let mut p = proc_with(AddRequest::default());
    hold(&mut p, vec!["db (started)".into()]);
    let fx = p.step(Input::Stop, t0).unwrap();
    assert!(fx.contains(&Effect::Log("stopped manually".into())));
    assert_eq!(p.status(), Status::ManuallyStopped);
    assert!(
        release(&mut p, vec![]).is_empty(),
        "a stopped process is not released"
    );

    let mut p = proc_with(AddRequest::default());
    hold(&mut p, vec!["db (started)".into()]);
    assert!(p.step(Input::Remove, t0).unwrap().contains(&Effect::Forget));

    let mut p = proc_with(AddRequest::default());
    hold(&mut p, vec!["db (started)".into()]);
    p.step(Input::Shutdown, t0).unwrap();
    assert_eq!(p.status(), Status::Stopped);

    let mut p = proc_with(AddRequest::default());
    hold(&mut p, vec!["db (started)".into()]);
    p.step(Input::Halt, t0).unwrap();
    assert!(p.halted());
    assert_eq!(p.status(), Status::Stopped);
}

#[test]
fn an_automatic_restart_held_still_counts_as_one() {
    let t0 = now0();
    let mut p = proc_with(AddRequest {
        auto_restart: Some(true),
        ..AddRequest::default()
    });
    p.step(Input::Start, t0).unwrap();
    p.step(Input::Spawned { pid: 10 }, t0).unwrap();
    let g = p.generation();
    let at = t0.wall;
    p.step(
        Input::Exited {
            generation: g,
            status: ExitStatus::Code(1),
            at,
        },
        t0,
    )
    .unwrap();
    assert_eq!(p.status(), Status::Backoff);
    let later = Now {
        at: t0.at + Duration::from_secs(60),
        wall: t0.wall + Duration::from_secs(60),
    };
    assert_eq!(p.step(Input::Tick, later).unwrap(), [Effect::Spawn]);
    hold(&mut p, vec!["db (started)".into()]);
    assert_eq!(p.status(), Status::Waiting);
    release(&mut p, vec![]);
    p.step(Input::Spawned { pid: 11 }, later).unwrap();
    assert_eq!(p.restarts_total, 1);
}

#[test]
fn facts_of_a_process() {
    let t0 = now0();
    let mut p = proc_with(AddRequest::default());
    assert_eq!(p.facts(), Facts::default());
    p.step(Input::Start, t0).unwrap();
    p.step(Input::Spawned { pid: 10 }, t0).unwrap();
    assert!(p.facts().running && !p.facts().succeeded);
    let g = p.generation();
    p.step(
        Input::Exited {
            generation: g,
            status: ExitStatus::Code(0),
            at: t0.wall,
        },
        t0,
    )
    .unwrap();
    assert_eq!(
        p.facts(),
        Facts {
            running: false,
            healthy: false,
            succeeded: true
        }
    );
    // Started again and held: a run is about to start, so not (yet) done.
    p.step(Input::Start, t0).unwrap();
    hold(&mut p, vec!["db (started)".into()]);
    assert!(!p.facts().succeeded);
}

#[test]
fn healthy_is_the_health_of_a_running_process() {
    let t0 = now0();
    let mut p = proc_with(AddRequest {
        health: Some(serde_json::from_str(r#"{"tcp": "127.0.0.1:1"}"#).unwrap()),
        ..AddRequest::default()
    });
    p.step(Input::Start, t0).unwrap();
    p.step(Input::Spawned { pid: 10 }, t0).unwrap();
    assert!(p.facts().running && !p.facts().healthy, "starting");
    p.health.as_mut().unwrap().health = crate::lifecycle::Health::Healthy;
    assert!(p.facts().meets(Healthy));
    p.health.as_mut().unwrap().health = crate::lifecycle::Health::Unhealthy;
    assert!(!p.facts().meets(Healthy));
}
