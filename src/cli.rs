//! The daemon's command line → `Config`. Parses and checks; starts nothing.
//! (`exeio` with a subcommand is the client: `client::`.)

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

pub const HELP: &str = "\
exeio — a small process supervisor controlled over an authenticated HTTP API

Usage: exeio [OPTIONS]                 run the supervisor (the daemon)
       exeio COMMAND [ARGS]            talk to a running exeio (exeio help)

Options:
  -H, --host HOST          address to bind (default 127.0.0.1)
  -P, --port PORT          port to bind; 0 picks a free one (default 8080)
  -k, --api-key KEY        the admin key clients must send; else
                           --api-key-file, else EXEIO_API_KEY, else
                           <config-dir>/api-key, generated on first start
      --api-key-file PATH  read the admin key from this file
      --config-dir DIR     config dir (default $XDG_CONFIG_HOME/exeio or ~/.config/exeio)
      --data-dir DIR       data dir, logs in DIR/logs (default $XDG_DATA_HOME/exeio
                           or ~/.local/share/exeio)
      --tls-cert FILE      serve HTTPS with this certificate chain (PEM)...
      --tls-key FILE       ...and its private key (PEM)
      --max-connections N  connections served at once (default 256)
      --max-connections-per-address N
                           of which from one address (default 32)
      --head-timeout S     a request head must arrive within S seconds (default 10)
      --idle-timeout S     close a kept-alive connection idle for S seconds (default 60)
      --write-timeout S    give up on a client that reads nothing for S seconds (default 30)
      --auth-fail-limit N  failed authentications from one address...
      --auth-fail-window S ...within S seconds lock it out for S seconds
                           (default 10 within 60)
      --apply-dir DIR      at start, apply every *.json in DIR (as exeio apply -f DIR)
      --trusted-proxy CIDR a reverse proxy (repeatable): the client is the rightmost
                           X-Forwarded-For address that is not a trusted proxy
      --proxy-protocol     trusted proxies send a PROXY v1/v2 header first
      --no-cgroups         use process groups even where cgroups are available
      --max-deploy-bytes N largest release upload accepted by POST /deploy (default 512 MiB)
      --max-release-bytes N
                           largest extracted release, all files (default 2 GiB)
  -h, --help               print this help
  -V, --version            print the version

Clients send a key as 'exeio-api-key: KEY' or 'Authorization: Bearer KEY'.
SIGTERM/SIGINT stop every process and exit; SIGHUP reopens the log files.
";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cli {
    Help,
    Version,
    Run(Box<Config>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `--apply-dir DIR`: apply every `*.json` in DIR at start.
    pub apply_dir: Option<PathBuf>,
    pub max_connections: usize,
    pub max_per_address: usize,
    pub auth_fail_limit: u32,
    pub auth_fail_window: Duration,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub cgroups: bool,
    pub trusted_proxies: Vec<crate::http::proxy::Cidr>,
    pub proxy_protocol: bool,
    /// `--max-deploy-bytes`: the cap of a `POST /deploy` body (SPEC 4c).
    pub max_deploy_bytes: u64,
    /// `--max-release-bytes`: the cap of an extracted release.
    pub max_release_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            api_key_file: None,
            config_dir: None,
            data_dir: None,
            tls_cert: None,
            tls_key: None,
            apply_dir: None,
            max_connections: 256,
            max_per_address: 32,
            auth_fail_limit: 10,
            auth_fail_window: Duration::from_secs(60),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            cgroups: true,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            max_deploy_bytes: 512 << 20,
            max_release_bytes: 2 << 30,
        }
    }
}

pub fn parse(args: Vec<OsString>) -> Result<Cli> {
    let mut p = pico_args::Arguments::from_vec(args);
    if p.contains(["-h", "--help"]) {
        return Ok(Cli::Help);
    }
    if p.contains(["-V", "--version"]) {
        return Ok(Cli::Version);
    }
    let d = Config::default();
    let host: Option<String> = p
        .opt_value_from_str(["-H", "--host"])
        .map_err(|e| named("--host", e))?;
    let port: Option<u16> = p
        .opt_value_from_fn(["-P", "--port"], |v| {
            v.parse::<u16>()
                .map_err(|_| "it is not a port number (0 to 65535)".to_owned())
        })
        .map_err(|e| named("--port", e))?;
    let api_key: Option<String> = p
        .opt_value_from_str(["-k", "--api-key"])
        .map_err(|e| named("--api-key", e))?;
    let path_flag = |p: &mut pico_args::Arguments, name: &'static str| {
        p.opt_value_from_os_str(name, path)
            .map_err(|e| named(name, e))
    };
    let api_key_file = path_flag(&mut p, "--api-key-file")?;
    let config_dir = path_flag(&mut p, "--config-dir")?;
    let data_dir = path_flag(&mut p, "--data-dir")?;
    let tls_cert = path_flag(&mut p, "--tls-cert")?;
    let tls_key = path_flag(&mut p, "--tls-key")?;
    let apply_dir = path_flag(&mut p, "--apply-dir")?;
    let max_connections: Option<usize> = p
        .opt_value_from_str("--max-connections")
        .map_err(|e| named("--max-connections", e))?;
    let max_per_address: Option<usize> = p
        .opt_value_from_str("--max-connections-per-address")
        .map_err(|e| named("--max-connections-per-address", e))?;
    let auth_fail_limit: Option<u32> = p
        .opt_value_from_str("--auth-fail-limit")
        .map_err(|e| named("--auth-fail-limit", e))?;
    let auth_fail_window: Option<u64> = p
        .opt_value_from_str("--auth-fail-window")
        .map_err(|e| named("--auth-fail-window", e))?;
    let mut seconds = |name: &'static str, default: Duration| -> Result<Duration> {
        match p
            .opt_value_from_str::<_, u64>(name)
            .map_err(|e| named(name, e))?
        {
            Some(0) => Err(Error::Usage(format!("{name} must be at least 1"))),
            Some(s) => Ok(Duration::from_secs(s)),
            None => Ok(default),
        }
    };
    let head_timeout = seconds("--head-timeout", d.head_timeout)?;
    let idle_timeout = seconds("--idle-timeout", d.idle_timeout)?;
    let write_timeout = seconds("--write-timeout", d.write_timeout)?;
    let no_cgroups = p.contains("--no-cgroups");
    let trusted_proxies: Vec<crate::http::proxy::Cidr> = p
        .values_from_str("--trusted-proxy")
        .map_err(|e| named("--trusted-proxy", e))?;
    let proxy_protocol = p.contains("--proxy-protocol");
    let mut bytes = |name: &'static str, default: u64| -> Result<u64> {
        match p
            .opt_value_from_str::<_, u64>(name)
            .map_err(|e| named(name, e))?
        {
            Some(0) => Err(Error::Usage(format!("{name} must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    };
    let max_deploy_bytes = bytes("--max-deploy-bytes", d.max_deploy_bytes)?;
    let max_release_bytes = bytes("--max-release-bytes", d.max_release_bytes)?;
    if proxy_protocol && trusted_proxies.is_empty() {
        return Err(Error::Usage(
            "--proxy-protocol needs --trusted-proxy (whose PROXY headers to believe)".into(),
        ));
    }
    let rest = p.finish();
    if let Some(first) = rest.first() {
        let first = first.to_string_lossy();
        if !first.starts_with('-') {
            return Err(Error::Usage(format!(
                "unknown command {first:?}; the commands are: {}",
                crate::client::args::COMMANDS.join(", ")
            )));
        }
        return Err(Error::Usage(format!("unexpected argument {first:?}")));
    }
    if api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(Error::Usage("--api-key must not be empty".into()));
    }
    if tls_cert.is_some() != tls_key.is_some() {
        return Err(Error::Usage("--tls-cert and --tls-key go together".into()));
    }
    let positive = |name: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(Error::Usage(format!("{name} must be at least 1"))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let max_connections = positive("--max-connections", max_connections, d.max_connections)?;
    let max_per_address = positive(
        "--max-connections-per-address",
        max_per_address,
        d.max_per_address,
    )?;
    let auth_fail_limit = positive(
        "--auth-fail-limit",
        auth_fail_limit.map(|n| n as usize),
        d.auth_fail_limit as usize,
    )? as u32;
    let auth_fail_window = match auth_fail_window {
        Some(0) => return Err(Error::Usage("--auth-fail-window must be at least 1".into())),
        Some(s) => Duration::from_secs(s),
        None => d.auth_fail_window,
    };
    Ok(Cli::Run(Box::new(Config {
        host: host.unwrap_or(d.host),
        port: port.unwrap_or(d.port),
        api_key,
        api_key_file,
        config_dir,
        data_dir,
        tls_cert,
        tls_key,
        apply_dir,
        max_connections,
        max_per_address,
        auth_fail_limit,
        auth_fail_window,
        head_timeout,
        idle_timeout,
        write_timeout,
        cgroups: !no_cgroups,
        trusted_proxies,
        proxy_protocol,
        max_deploy_bytes,
        max_release_bytes,
    })))
}

/// A flag's bad value, naming the flag (pico-args names only the value).
fn named(flag: &str, e: pico_args::Error) -> Error {
    match e {
        pico_args::Error::OptionWithoutAValue(_) => Error::Usage(format!("{flag} needs a value")),
        pico_args::Error::Utf8ArgumentParsingFailed { value, cause } => {
            Error::Usage(format!("{flag}: {value:?} is not valid: {cause}"))
        }
        pico_args::Error::ArgumentParsingFailed { cause } => {
            Error::Usage(format!("{flag}: {cause}"))
        }
        other => Error::Usage(format!("{flag}: {other}")),
    }
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
        assert_eq!(*c, Config::default());
        let Cli::Run(c) = run(&[
            "-H",
            "0.0.0.0",
            "--port",
            "0",
            "-k",
            "s3cret",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--max-connections",
            "10",
            "--max-connections-per-address",
            "2",
            "--auth-fail-limit",
            "3",
            "--auth-fail-window",
            "5",
            "--no-cgroups",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.host.as_str(), c.port, c.api_key.as_deref()),
            ("0.0.0.0", 0, Some("s3cret"))
        );
        assert_eq!((c.max_connections, c.max_per_address), (10, 2));
        assert_eq!(
            (c.auth_fail_limit, c.auth_fail_window),
            (3, Duration::from_secs(5))
        );
        assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
        assert!(!c.cgroups);
        assert_eq!(run(&["--version"]).unwrap(), Cli::Version);
        assert_eq!(run(&["-h"]).unwrap(), Cli::Help);
    }

    #[test]
    fn deploy_caps() {
        let d = Config::default();
        assert_eq!(
            (d.max_deploy_bytes, d.max_release_bytes),
            (512 << 20, 2 << 30)
        );
        let Cli::Run(c) =
            run(&["--max-deploy-bytes", "1000", "--max-release-bytes", "5000"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((c.max_deploy_bytes, c.max_release_bytes), (1000, 5000));
        assert!(run(&["--max-deploy-bytes", "0"]).is_err());
        assert!(run(&["--max-release-bytes", "lots"]).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &["--bogus"][..],
            &["--port", "99999"],
            &["--port"],
            &["--api-key", ""],
            &["--tls-cert", "c.pem"],
            &["--max-connections", "0"],
            &["--auth-fail-window", "0"],
            &["--head-timeout", "0"],
            &["--write-timeout", "x"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        let said = |args: &[&str]| run(args).unwrap_err().to_string();
        assert!(
            said(&["-P", "99999"]).contains("--port"),
            "{}",
            said(&["-P", "99999"])
        );
        assert!(said(&["--head-timeout", "x"]).contains("--head-timeout"));
        let unknown = said(&["updte", "web"]);
        assert!(unknown.contains("unknown command \"updte\""), "{unknown}");
        assert!(unknown.contains("ls, status"), "{unknown}");
    }

    #[test]
    fn help_gives_the_key_order_the_code_uses() {
        let order = [
            "--api-key",
            "--api-key-file",
            "EXEIO_API_KEY",
            "<config-dir>/api-key",
        ];
        let at: Vec<usize> = order.iter().map(|w| HELP.find(w).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    }
}
