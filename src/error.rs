//! Errors: `Error` for start-up and internal faults (with context), and
//! `ApiError` for what an HTTP client is told. The status mapping of
//! `ApiError` lives in `routes::status_of`, nowhere else.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::spec::FieldError;

/// A fault that stops exeio from starting or running.
#[derive(Debug)]
pub enum Error {
    /// A file-system operation on `path` failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Could not bind the listening socket.
    Bind { addr: String, source: io::Error },
    /// Another exeio holds the lock.
    AlreadyRunning {
        pid: Option<u32>,
        config_dir: PathBuf,
    },
    /// A thread or part of exeio could not be started.
    Start {
        what: &'static str,
        source: io::Error,
    },
    /// Bad command line.
    Usage(String),
    /// Anything else, already phrased for the operator.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::AlreadyRunning { pid, config_dir } => {
                let who = pid.map_or_else(
                    || "another exeio".to_owned(),
                    |p| format!("another exeio (pid {p})"),
                );
                write!(
                    f,
                    "{who} is already running with config dir {}",
                    config_dir.display()
                )
            }
            Error::Start { what, source } => write!(f, "cannot start {what}: {source}"),
            Error::Usage(msg) => write!(f, "{msg} (see --help)"),
            Error::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Bind { source, .. } | Error::Start { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl Error {
    pub fn start(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Start { what, source }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What an API client is told when a request fails. Its HTTP status is
/// decided in one place: `api::status_of`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    BadRequest(String),
    /// A body that does not validate, naming the field.
    Invalid(FieldError),
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    /// The path exists with these methods.
    MethodNotAllowed(Vec<&'static str>),
    Conflict(String),
    /// The body did not arrive in time.
    Timeout,
    PayloadTooLarge,
    /// Too many failed authentications: try again after this many seconds.
    Throttled(u64),
    Unavailable(String),
    Internal(String),
    /// A body over a route's own cap (`POST /deploy`), saying which (413).
    TooLarge(String),
    /// Understood but not carried out: a deploy's build failed (422).
    Unprocessable(String),
    /// No room on the disk (507).
    InsufficientStorage(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m)
            | ApiError::Internal(m)
            | ApiError::TooLarge(m)
            | ApiError::Unprocessable(m)
            | ApiError::InsufficientStorage(m) => f.write_str(m),
            ApiError::Invalid(e) => write!(f, "{}", e.message),
            ApiError::MethodNotAllowed(allow) => {
                write!(f, "method not allowed here: use {}", allow.join(" or "))
            }
            ApiError::Unauthorized => f.write_str(
                "missing or wrong API key: send it in the 'exeio-api-key' header or as 'Authorization: Bearer KEY'",
            ),
            ApiError::Timeout => f.write_str("the request body did not arrive in time"),
            ApiError::PayloadTooLarge => f.write_str("request body is larger than 1 MiB"),
            ApiError::Throttled(s) => write!(
                f,
                "too many failed authentications from your address: try again in {s} s"
            ),
        }
    }
}

impl ApiError {
    pub fn unknown_process(id: &str) -> ApiError {
        ApiError::NotFound(format!("no process with id '{id}'"))
    }
}
