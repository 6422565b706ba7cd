//! Integration tests: every test runs the real `exeio` binary in a private temp dir
//! (see `util::Daemon`) and drives it over HTTP with a raw `TcpStream` client.
//!
//! Waiting is always `util::wait_until(deadline, predicate)`, never a bare sleep.
//! `dashboard` drives the page in headless Chromium (python3, selenium, chromium).
//! They mostly wait, so `cargo test` runs 8 at a time (`.cargo/config.toml`),
//! also on a 2-core machine; `-- --test-threads=N` picks another number.

mod util;

mod api;
mod api_contract;
mod cli;
mod client;
mod client_apply;
mod client_deploy;
mod client_hosts;
mod client_ops;
mod client_tls;
mod dashboard;
mod dashboard_deploy;
mod deploy;
mod deploy_faults;
mod edge;
mod edge_audit;
mod edge_capacity;
mod edge_differential;
mod edge_parse;
mod edge_proxy;
mod hardening;
mod health;
mod instances;
mod intent;
mod lifecycle;
mod logs;
mod notify;
mod observe;
mod openapi;
mod operate;
mod ops;
mod order;
mod orphans;
mod periodic;
mod persistence;
mod releases_dir;
mod restart;
mod saving;
mod schedule;
mod security;
mod shutdown;
