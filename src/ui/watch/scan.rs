//! What a watched folder holds right now: every PDF under it with its size and modification
//! time (no reading: a scan of a large library costs one `stat` per file), and the device the
//! folder is on, so that an unmounted drive whose empty mount point stays behind is told apart
//! from a folder whose files were deleted.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file's size and modification time: while either still moves, the file is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    pub size: u64,
    pub modified: Option<SystemTime>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FolderScan {
    /// The file system the folder is on.
    pub device: u64,
    pub files: BTreeMap<PathBuf, Signature>,
}

/// Scans `folder` (recursively, hidden entries skipped, each folder entered once); None when
/// the folder is gone or is not a folder.
pub fn scan(folder: &Path) -> Option<FolderScan> {
    let meta = std::fs::metadata(folder).ok()?;
    if !meta.is_dir() {
        return None;
    }
    let mut files = BTreeMap::new();
    let mut entered = HashSet::new();
    walk(folder, &mut entered, &mut files);
    Some(FolderScan {
        device: meta.dev(),
        files,
    })
}

fn walk(dir: &Path, entered: &mut HashSet<(u64, u64)>, files: &mut BTreeMap<PathBuf, Signature>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    if !entered.insert((meta.dev(), meta.ino())) {
        return; // a link back to a folder already walked
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return; // unreadable: the ingest reports it
    };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, entered, files);
        } else if meta.is_file() && pagesight_loader::discover::is_pdf_name(&path) {
            files.insert(
                path,
                Signature {
                    size: meta.len(),
                    modified: meta.modified().ok(),
                },
            );
        }
    }
}
