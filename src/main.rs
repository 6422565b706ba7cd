//! The `exeio` binary: parse the command line, run, report an error once.

use std::process::ExitCode;

use exeio::cli::{self, Cli};
use exeio::error::Error;

fn main() -> ExitCode {
    exeio::sys::lean_malloc();
    let cli = match cli::parse(std::env::args_os().skip(1).collect()) {
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
