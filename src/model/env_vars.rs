//! The environment variables this crate reads, in one place (the README lists every crate's).

/// The tokenizer file the built-in `random:*` models use, instead of the shipped one.
pub const TOKENIZER: &str = "PAGESIGHT_TOKENIZER";
