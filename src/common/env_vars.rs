//! The environment variables this crate reads, in one place (the README lists every crate's).

/// Where quantised weights are cached: a folder, or `off` (default: `quant-cache` in the data dir).
pub const QUANT_CACHE: &str = "PAGESIGHT_QUANT_CACHE";

/// The libpdfium to load (a file, or the folder that holds it).
pub const PDFIUM_LIB: &str = "PDFIUM_LIB";
