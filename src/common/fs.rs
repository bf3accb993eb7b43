//! File-system durability shared by the index's commits and the quantised-weight cache.

use std::fs::File;
use std::path::Path;

/// fsync a directory so a rename or a new file inside it survives a power cut.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|f| f.sync_all())
}
