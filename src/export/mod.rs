//! Files a user takes away: search results as Markdown or CSV (the app's Export buttons and
//! `pagesight search --export`), and the escaping each format needs. Building the text is cheap
//! (a result list is at most a few hundred rows); the write goes through
//! `pagesight_common::fs::write_atomic`, off the UI thread.

pub mod csv;
pub mod markdown;
pub mod results;
