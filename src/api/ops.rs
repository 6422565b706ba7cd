//! Handlers of the everyday operations of issue 21 that are neither a
//! lifecycle request nor a read: `POST /signal/{id}`. Thin: parse, send
//! one `Call`.

use serde::Deserialize;

use super::procs::path_id;
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::Exchange;
use crate::protocol::Call;
use crate::spec::{self, FieldError};

/// `POST /signal/{id}` `{"signal":"HUP"}`: to the process's group, no restart.
pub fn signal(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        signal: String,
    }
    let id = path_id(args)?;
    let body = api.body(ex)?;
    let b: Body = spec::parse_object(&body).map_err(ApiError::Invalid)?;
    let (number, name) = spec::any_signal(&b.signal).map_err(|message| {
        ApiError::Invalid(FieldError {
            field: "signal".into(),
            message,
        })
    })?;
    api.ask(Call::Signal(id, number, name)).map(Answer::Done)
}
