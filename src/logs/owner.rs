//! Writing a log under its one owner: operations are queued (`post`), a
//! child's thread is attached as the writer for its run (`attach`,
//! `detach`, `release`), the owner carries out what is queued (the
//! drains), and the last write error is kept for `/status`.

use std::sync::MutexGuard;
use std::time::SystemTime;

use super::{Inner, LogError, LogFile, Op, Post, Waker, lock};
use crate::timefmt::{log_stamp, unix_secs};

impl LogFile {
    /// Queue an operation for this log's one writer, in order. Never waits
    /// on the file: the caller only learns whom to wake.
    pub fn post(&self, op: Op) -> Post {
        let mut q = lock(&self.queue);
        q.ops.push(op);
        match &q.writer {
            Some(w) => Post::Wake(w.clone()),
            None if q.drain_scheduled => Post::Nothing,
            None => {
                q.drain_scheduled = true;
                Post::Drain
            }
        }
    }

    /// Make a child's thread (woken by `waker`) this log's only writer,
    /// until it calls `detach`. Called by the supervisor when it spawns the
    /// child, before it queues the run's first line.
    pub fn attach(&self, waker: Waker) {
        lock(&self.queue).writer = Some(waker);
    }

    /// The child's thread gives the log back to the logger thread, after
    /// it has written what is queued (its exit line last).
    pub fn detach(&self) {
        let mut q = lock(&self.queue);
        q.writer = None;
        let ops = std::mem::take(&mut q.ops);
        let g = self.lock();
        drop(q);
        self.run(g, ops);
    }

    /// The supervisor gives back a log whose child's thread never started;
    /// what is queued is the logger thread's to write (`Post::Drain`).
    pub fn release(&self) -> Post {
        let mut q = lock(&self.queue);
        q.writer = None;
        if q.ops.is_empty() || q.drain_scheduled {
            return Post::Nothing;
        }
        q.drain_scheduled = true;
        Post::Drain
    }

    /// Carry out the queued operations, in order: called by the log's
    /// owner (its child's thread while attached; tests).
    pub fn drain(&self) {
        let mut q = lock(&self.queue);
        q.drain_scheduled = false;
        if q.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut q.ops);
        let g = self.lock();
        drop(q);
        self.run(g, ops);
    }

    /// A run's start, on its child's thread before it reads any output:
    /// write what is queued up to its `Op::Started` line.
    pub fn drain_through_start(&self) {
        let q = &mut *lock(&self.queue);
        let n = q
            .ops
            .iter()
            .position(|op| matches!(op, Op::Started(_)))
            .map_or(q.ops.len(), |i| i + 1);
        let ops: Vec<Op> = q.ops.drain(..n).collect();
        let g = self.lock();
        self.run(g, ops);
    }

    /// The logger thread's drain: nothing while a child's thread owns the
    /// log (what is queued is that thread's to write).
    pub fn drain_unowned(&self) {
        let mut q = lock(&self.queue);
        q.drain_scheduled = false;
        if q.writer.is_some() || q.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut q.ops);
        let g = self.lock();
        drop(q);
        self.run(g, ops);
    }

    /// The logger thread's `retry`: a log a child's thread owns is only
    /// woken (its thread retries). True while lines are held back.
    pub fn retry_unowned(&self) -> bool {
        let q = lock(&self.queue);
        if let Some(wake) = &q.writer {
            wake();
            return true;
        }
        let mut g = self.lock();
        drop(q);
        if !g.pending.is_empty() {
            g.write_through(&self.path, &[]);
            self.publish_health(&g);
        }
        !g.pending.is_empty()
    }

    fn run(&self, mut g: MutexGuard<'_, Inner>, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::Line(msg) | Op::Started(msg) => g.write_through(&self.path, &system_line(&msg)),
                Op::Raw(text) => g.write_through(&self.path, &raw_line(&text)),
                Op::Clear(reply) => {
                    let _ = reply.send(g.clear(&self.path));
                }
                Op::Reopen => g.reopen(),
                Op::Configure(cfg) => {
                    if cfg.backups != g.cfg.backups {
                        g.counts.clear(); // the backups counted change
                        g.counting = None;
                    }
                    g.cfg = cfg;
                }
            }
        }
        self.publish_health(&g);
    }

    /// Write what failed to be written before, if anything; true while
    /// some of it still cannot be written. Called by the log's owner.
    pub fn retry(&self) -> bool {
        let mut g = self.lock();
        if !g.pending.is_empty() {
            g.write_through(&self.path, &[]);
            self.publish_health(&g);
        }
        !g.pending.is_empty()
    }

    /// Append `[ts] SYSTEM: msg` now (tests, and writers that own the log).
    pub fn system(&self, msg: &str) {
        let mut g = self.lock();
        g.write_through(&self.path, &system_line(msg));
        self.publish_health(&g);
    }

    /// Append whole, formatted lines; rotation happens between them.
    pub fn write_lines(&self, formatted: &[u8]) {
        let mut g = self.lock();
        g.write_through(&self.path, formatted);
        self.publish_health(&g);
    }

    fn publish_health(&self, g: &Inner) {
        let now = g.error.as_ref().map(|e| match e {
            LogError::Write(m) | LogError::Rotate(m) => m,
        });
        let mut h = lock(&self.health);
        if h.as_ref() != now {
            *h = now.cloned();
        }
    }

    /// The last write error, if writes are failing. Quick: never waits for
    /// a write in progress.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.health).clone()
    }
}

fn system_line(msg: &str) -> Vec<u8> {
    raw_line(&format!("SYSTEM: {msg}"))
}

fn raw_line(text: &str) -> Vec<u8> {
    let mut line = log_stamp(unix_secs(SystemTime::now())).to_vec();
    line.push(b' ');
    line.extend_from_slice(text.replace(['\r', '\n'], " ").as_bytes());
    line.push(b'\n');
    line
}
