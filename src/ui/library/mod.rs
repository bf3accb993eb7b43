//! The library: several corpora (a folder of PDFs and its index each), listed with what their
//! indexes hold, searched together, and watched for changes (`ui::watch`).

pub mod corpus;
pub mod gather;
pub mod merge;
mod view;

pub use corpus::Corpus;
pub use view::{LibraryAction, LibraryView};
