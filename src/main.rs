//! The `exeio` binary: `exeio COMMAND ...` is the client (`exeio::client`);
//! with only flags (or none) it is the daemon: parse the command line, run,
//! report an error once.

use std::process::ExitCode;

use exeio::cli::{self, Cli};
use exeio::error::Error;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(client_args) = exeio::client::client_args(&args) {
        return exeio::client::main(client_args);
    }
    exeio::sys::lean_malloc();
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            exeio::diag::error(&e);
            return ExitCode::from(2);
        }
    };
    match cli {
        Cli::Help => {
            print!("{}", cli::HELP);
            ExitCode::SUCCESS
        }
        Cli::Version => {
            println!("exeio {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cli::Run(cfg) => match exeio::daemon::run(*cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ Error::Usage(_)) => {
                exeio::diag::error(&e);
                ExitCode::from(2)
            }
            Err(e) => {
                exeio::diag::error(&e);
                ExitCode::FAILURE
            }
        },
    }
}
