//! The library: several corpora (a folder of PDFs and its index each), listed with what their
//! indexes hold, searched together (`pagesight_engine::library_search`), and watched for changes (`ui::watch`).

pub mod corpus;
mod view;

pub use corpus::Corpus;
pub use view::{LibraryAction, LibraryView};
