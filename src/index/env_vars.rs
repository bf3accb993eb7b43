//! The environment variables this crate reads, in one place (the README lists every crate's).
//! Both are test hooks of the store (`hooks`), read only in builds with the `test-hooks` feature.

/// A file that every commit appends its steps to.
pub const COMMIT_TRACE: &str = "PAGESIGHT_COMMIT_TRACE";

/// `enospc|efbig|edquot:<n>`: the n-th segment or manifest write fails with that error.
pub const INDEX_FAULT: &str = "PAGESIGHT_INDEX_FAULT";
