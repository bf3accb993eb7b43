//! Which version of a file is on disk, without reading it: the reader keeps what it opened and
//! verified until this changes (a commit swaps the manifest by rename: a new inode; segments are
//! written once and never modified in place).

use std::path::Path;

/// Device, inode, length and modification time of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    pub fn of(path: &Path) -> std::io::Result<FileIdentity> {
        Ok(Self::from_metadata(&std::fs::metadata(path)?))
    }

    pub fn from_metadata(m: &std::fs::Metadata) -> FileIdentity {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(-1);
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        FileIdentity {
            dev,
            ino,
            len: m.len(),
            mtime_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_over_the_file_changes_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (a, tmp) = (dir.path().join("a"), dir.path().join("a.tmp"));
        std::fs::write(&a, b"one").unwrap();
        let first = FileIdentity::of(&a).unwrap();
        assert_eq!(first, FileIdentity::of(&a).unwrap());
        // Same length, same content even: the swap is still seen.
        std::fs::write(&tmp, b"one").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert_ne!(first, FileIdentity::of(&a).unwrap());
    }
}
