//! Command line → `Config`. Parses and checks; starts nothing.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, Result};

pub const HELP: &str = "\
exeio — a small process supervisor controlled over an authenticated HTTP API

Usage: exeio [OPTIONS]

Options:
  -H, --host HOST          address to bind (default 127.0.0.1)
  -P, --port PORT          port to bind; 0 picks a free one (default 8080)
  -k, --api-key KEY        API key clients must send (else EXEIO_API_KEY,
                           else --api-key-file, else <config-dir>/api-key,
                           generated on first start)
      --api-key-file PATH  read the API key from this file
      --config-dir DIR     config dir (default $XDG_CONFIG_HOME/exeio or ~/.config/exeio)
      --data-dir DIR       data dir, logs in DIR/logs (default $XDG_DATA_HOME/exeio
                           or ~/.local/share/exeio)
  -h, --help               print this help
  -V, --version            print the version

Clients send the key as 'exeio-api-key: KEY' or 'Authorization: Bearer KEY'.
SIGTERM/SIGINT stop every process and exit; SIGHUP reopens the log files.
";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cli {
    Help,
    Version,
    Run(Config),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

pub fn parse(args: Vec<OsString>) -> Result<Cli> {
    let mut p = pico_args::Arguments::from_vec(args);
    if p.contains(["-h", "--help"]) {
        return Ok(Cli::Help);
    }
    if p.contains(["-V", "--version"]) {
        return Ok(Cli::Version);
    }
    let usage = |e: pico_args::Error| Error::Usage(e.to_string());
    let host: Option<String> = p.opt_value_from_str(["-H", "--host"]).map_err(usage)?;
    let port: Option<u16> = p.opt_value_from_str(["-P", "--port"]).map_err(usage)?;
    let api_key: Option<String> = p.opt_value_from_str(["-k", "--api-key"]).map_err(usage)?;
    let api_key_file: Option<PathBuf> = p
        .opt_value_from_os_str("--api-key-file", path)
        .map_err(usage)?;
    let config_dir: Option<PathBuf> = p
        .opt_value_from_os_str("--config-dir", path)
        .map_err(usage)?;
    let data_dir: Option<PathBuf> = p.opt_value_from_os_str("--data-dir", path).map_err(usage)?;
    let rest = p.finish();
    if let Some(first) = rest.first() {
        return Err(Error::Usage(format!(
            "unexpected argument {:?}",
            first.to_string_lossy()
        )));
    }
    if api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(Error::Usage("--api-key must not be empty".into()));
    }
    Ok(Cli::Run(Config {
        host: host.unwrap_or_else(|| "127.0.0.1".into()),
        port: port.unwrap_or(8080),
        api_key,
        api_key_file,
        config_dir,
        data_dir,
    }))
}

fn path(s: &std::ffi::OsStr) -> std::result::Result<PathBuf, &'static str> {
    if s.is_empty() {
        Err("empty path")
    } else {
        Ok(PathBuf::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Cli> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn defaults_and_flags() {
        let Cli::Run(c) = run(&[]).unwrap() else {
            panic!()
        };
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8080));
        let Cli::Run(c) = run(&["-H", "0.0.0.0", "--port", "0", "-k", "s3cret"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.host.as_str(), c.port, c.api_key.as_deref()),
            ("0.0.0.0", 0, Some("s3cret"))
        );
        assert_eq!(run(&["--version"]).unwrap(), Cli::Version);
        assert_eq!(run(&["-h"]).unwrap(), Cli::Help);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--port", "99999"]).is_err());
        assert!(run(&["--port"]).is_err());
        assert!(run(&["--api-key", ""]).is_err());
    }
}
