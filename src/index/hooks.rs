//! Test hooks of the store, off unless the crate's `test-hooks` feature is on and their
//! environment variable is set. They let a harness outside the process observe and fault commits
//! (`tests/crash/`, `pagesight bench crash`):
//!
//! - `PAGESIGHT_COMMIT_TRACE=<file>`: every commit appends `commit-begin <generation> <pages>`
//!   (the page total it will make visible), one `step <what>` line before each step (`fsync …`
//!   steps and `commit text`, whose tantivy commit fsyncs, are the durable-write steps) and
//!   `commit-end <generation> <pages>`. Each line is one `write(2)` on an `O_APPEND` file, so a
//!   process SIGKILLed anywhere leaves exactly the lines it wrote before it died (no fsync
//!   needed: a killed process's writes stay in the page cache). Steps are written *before* the
//!   step runs: after `step rename MANIFEST` the commit may or may not be visible; after the
//!   next step it is.
//! - `PAGESIGHT_INDEX_FAULT=<kind>:<n>` with kind `enospc`, `efbig` or `edquot`: the n-th write
//!   (1-based) of a segment or manifest file in this process fails with that error, as a full
//!   disk or quota would make it. Tantivy's own writes are not counted (a file-size rlimit
//!   covers those).

use crate::env_vars::{COMMIT_TRACE, INDEX_FAULT};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

fn trace_file() -> Option<&'static Mutex<File>> {
    static TRACE: OnceLock<Option<Mutex<File>>> = OnceLock::new();
    TRACE
        .get_or_init(|| {
            if !cfg!(feature = "test-hooks") {
                return None;
            }
            let path = std::env::var_os(COMMIT_TRACE)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path);
            match f {
                Ok(f) => Some(Mutex::new(f)),
                Err(e) => {
                    tracing::warn!("{COMMIT_TRACE}: cannot open {path:?}: {e}");
                    None
                }
            }
        })
        .as_ref()
}

fn trace(line: std::fmt::Arguments<'_>) {
    if let Some(f) = trace_file() {
        // One write per line: a kill cannot leave half a line that looks like a whole one.
        let text = format!("{line}\n");
        if let Ok(mut f) = f.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// A commit that will make `generation` with `pages` live pages visible starts.
pub fn commit_begin(generation: u64, pages: u64) {
    trace(format_args!("commit-begin {generation} {pages}"));
}

/// The next step of the commit in progress starts.
pub fn step(what: &str) {
    trace(format_args!("step {what}"));
}

/// The commit of `generation` is durable and visible.
pub fn commit_end(generation: u64, pages: u64) {
    trace(format_args!("commit-end {generation} {pages}"));
}

fn fault() -> Option<(i32, u64)> {
    static FAULT: OnceLock<Option<(i32, u64)>> = OnceLock::new();
    *FAULT.get_or_init(|| {
        if !cfg!(feature = "test-hooks") {
            return None;
        }
        let v = std::env::var(INDEX_FAULT).ok()?;
        let (kind, n) = v.split_once(':')?;
        let errno = match kind {
            "enospc" => libc::ENOSPC,
            "efbig" => libc::EFBIG,
            "edquot" => libc::EDQUOT,
            _ => return None,
        };
        Some((errno, n.parse().ok()?))
    })
}

/// Called before each write of an index file: the injected failure, when this is the n-th.
pub fn before_write() -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let Some((errno, n)) = fault() else {
        return Ok(());
    };
    if WRITES.fetch_add(1, Ordering::SeqCst) + 1 == n {
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    Ok(())
}
