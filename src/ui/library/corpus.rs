//! One corpus of the library as the app remembers it: a folder of PDFs and the index made from
//! it. What the index holds (pages, files, model, size) is not stored here: it is read from the
//! index itself (`Command::Stats`), so it can never disagree with it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Corpus {
    pub folder: PathBuf,
    /// Fixed when the corpus is added (the per-folder default, or the app's `--index`), so a
    /// corpus keeps its index whatever the defaults become.
    pub index: PathBuf,
    /// Included when the Search view searches the library.
    pub searched: bool,
    /// Watched for new, changed and deleted PDFs while the app is open.
    pub watched: bool,
    /// When its last ingest finished (Unix seconds).
    pub last_ingest: Option<u64>,
}

impl Default for Corpus {
    fn default() -> Self {
        Corpus {
            folder: PathBuf::new(),
            index: PathBuf::new(),
            searched: true,
            watched: true,
            last_ingest: None,
        }
    }
}

impl Corpus {
    pub fn new(folder: &Path, index: &Path) -> Corpus {
        Corpus {
            folder: folder.to_path_buf(),
            index: index.to_path_buf(),
            ..Default::default()
        }
    }

    /// The name results and filters show: the folder's last component.
    pub fn name(&self) -> String {
        crate::ui::format::file_name(&self.folder)
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
