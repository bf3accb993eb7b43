//! The environment variables this crate reads, in one place (the README lists every crate's).
//! The fault hooks are read only in builds with the `test-hooks` feature.

/// Test hook: `<text>` makes every read of a file whose name contains it fail (`fault`).
pub const READ_FAULT: &str = "PAGESIGHT_READ_FAULT";

/// Test hook: `abort:<text>` makes a render worker abort, `hang:<text>` makes it sleep forever
/// (after creating `<pdf path>.hanging`, so a test knows it is mid-page), when asked to render a
/// page of a file whose name contains `<text>`; several rules may be given, separated by commas.
/// Set by the parent through `LoaderOptions::worker_env` (or inherited from its environment).
pub const WORKER_FAULT: &str = "PAGESIGHT_WORKER_FAULT";
