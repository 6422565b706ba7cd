//! Releases on disk (SPEC 4c): where an uploaded release is unpacked, how the
//! live one is switched, and how a crash at any point is recovered at boot.
//!
//! Layout, per process `id`:
//! ```text
//! <data-dir>/releases/<id>/
//!     .upload-<rand>           the body of a deploy being received (a file)
//!     .incoming-<rand>/        a release being extracted, checked and synced
//!     <YYYYMMDDTHHMMSSZ-<12 hex>>/   a complete release (renamed from .incoming-*)
//!     releases.json            one entry per release dir (atomic writes)
//!     current -> <release>     the live release (a relative symlink)
//!     current.tmp              the next `current`, renamed over it
//!     .remove-<rand>/          a release being deleted (renamed away first)
//! ```
//!
//! Crash-safety rules (every step is either done or not, and `recover` knows
//! which):
//! - A directory with a release name is only ever made by renaming a
//!   `.incoming-*` dir whose files and dirs were all fsynced; the root is
//!   fsynced after the rename. So a release dir is never half-written.
//! - Its metadata entry is written after the rename (tmp + fsync + rename +
//!   fsync dir), as `pending`. A release dir with no entry is an interrupted
//!   commit, removed at boot.
//! - `current` is switched by making `current.tmp` and renaming it over
//!   `current` (atomic), then fsyncing the root. It always names a complete
//!   release.
//! - A release that is `current` and still `pending` at boot was being gated
//!   when exeio died: `recover` switches back to the last one that passed the
//!   gate (or unlinks `current`) and marks it `failed`.
//!
//! Who calls what: `extract` and `Releases` are called by the deploy flow on
//! its worker (one deploy per process at a time, so one writer per releases
//! dir); `recover` once by the daemon at start-up, before any process starts;
//! `resolve::for_spawn` (through `live_dir`, a read of one symlink) by the
//! supervisor at each spawn.

mod entry_path;
pub mod extract;
mod recover;
pub mod releases;
// The flow (branch `deploy`): the upload's file, the build step, the health
// gate (pure) and the deploy/rollback flow that drives them.
pub mod build;
pub mod flow;
pub mod gate;
pub mod upload;

pub use extract::{ExtractError, Extracted, Limits, Owner, extract};
pub use releases::{Outcome, Release, Releases, Temp, live_dir, recover, release_name};

// `{release}` and EXEIO_RELEASE_DIR at each spawn (branch `store`).
pub mod resolve;
