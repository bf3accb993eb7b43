//! The environment variables the app reads, in one place (the README lists every crate's).

/// `tracing` filter for the log on stderr, e.g. `info` or `pagesight_engine=debug`.
pub const LOG: &str = "PAGESIGHT_LOG";

/// The index `pagesight index …` works on, when `--index` is not given.
pub const INDEX: &str = "PAGESIGHT_INDEX";
