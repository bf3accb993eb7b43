//! On-disk format constants, the error type, checksums and the atomic-write helpers that every
//! index file goes through.

use super::hooks;
use std::path::{Path, PathBuf};

/// Version of every file this build writes. Readers refuse anything newer (or foreign).
pub const FORMAT_VERSION: u32 = 1;
/// Name of the manifest: the single source of truth for what is committed.
pub const MANIFEST_FILE: &str = "MANIFEST";
pub const MANIFEST_TMP: &str = "MANIFEST.tmp";
/// Page vectors live here, one immutable file per commit (or per compaction).
pub const SEGMENTS_DIR: &str = "segments";
/// The tantivy text index (metadata + BM25 over page text).
pub const TEXT_DIR: &str = "text";
/// Doc tokens are stored in blocks of this many tokens, dimension-major inside a block, so the
/// MaxSim kernel loads 16 tokens' values of one dimension with one vector load.
pub const BLOCK_TOKENS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// ENOSPC, EFBIG or EDQUOT while writing: the user must free space, nothing is damaged.
    #[error("{path}: the disk is full ({}). The index keeps its last commit intact; free some disk space (or raise the quota / file-size limit), then run the same command again to continue", os_words(cause))]
    DiskFull {
        path: PathBuf,
        /// Not `source`: the message already says it, and error chains would repeat it.
        cause: std::io::Error,
    },
    #[error("{path} is corrupted: {what}. Run `pagesight index verify` for a full report; re-ingest into a fresh --index folder if it persists")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path} was written by index format version {found}, newer than this pagesight understands ({FORMAT_VERSION}); upgrade pagesight to use it")]
    NewerVersion { path: PathBuf, found: u32 },
    #[error("{path} is not a pagesight index file ({what}); point --index at a pagesight index folder or an empty one")]
    Foreign { path: PathBuf, what: String },
    #[error("{0}")]
    ModelMismatch(String),
    #[error("{0}")]
    Invalid(String),
    #[error("text index in {path}: {message}")]
    Text { path: PathBuf, message: String },
    /// Another writer holds the index: tantivy's writer lock on its text store is taken.
    #[error("index {path} is being written by another process ({message})")]
    Busy { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, IndexError>;

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| {
        let path = path.to_path_buf();
        if is_disk_full(&source) {
            IndexError::DiskFull {
                path,
                cause: source,
            }
        } else {
            IndexError::Io { path, source }
        }
    }
}

/// The errno values that mean "no room to write": disk full, file-size limit, quota.
const DISK_FULL_ERRNOS: [i32; 3] = [libc::ENOSPC, libc::EFBIG, libc::EDQUOT];

pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|c| DISK_FULL_ERRNOS.contains(&c))
}

/// "No space left on device" without " (os error 28)".
fn os_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// The disk-full error named in a message of a library that only gives text (tantivy wraps
/// I/O errors in its own types), recognised by the OS's own wording of those errnos.
pub fn disk_full_in_message(message: &str) -> Option<std::io::Error> {
    DISK_FULL_ERRNOS
        .iter()
        .map(|&c| std::io::Error::from_raw_os_error(c))
        .find(|e| message.contains(&os_words(e)))
}

pub fn corrupt(path: &Path, what: impl Into<String>) -> IndexError {
    IndexError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_hash_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// fsync a directory so a rename or a new file inside it survives a power cut.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    pagesight_common::fs::fsync_dir(dir).map_err(io_err(dir))
}

/// Writes `bytes` to `dir/name` atomically through `dir/tmp_name` (`common::fs::write_atomic_via`:
/// temp file, fsync, rename over, fsync the folder), each step traced and the write open to an
/// injected failure (`hooks`). A crash at any point leaves either the old file or the new one,
/// never a mix.
pub fn atomic_write(dir: &Path, name: &str, tmp_name: &str, bytes: &[u8]) -> Result<()> {
    use pagesight_common::fs::AtomicStep;
    pagesight_common::fs::write_atomic_via(&dir.join(name), &dir.join(tmp_name), bytes, |step| {
        match step {
            AtomicStep::Create => hooks::step(&format!("write {tmp_name}")),
            AtomicStep::Write => hooks::before_write()?,
            AtomicStep::Fsync => hooks::step(&format!("fsync {tmp_name}")),
            AtomicStep::Rename => hooks::step(&format!("rename {name}")),
            AtomicStep::FsyncDir => hooks::step("fsync index dir"),
        }
        Ok(())
    })
    .map_err(|e| io_err(&e.path)(e.source))
}

/// Little-endian field reader over a byte slice that reports truncation instead of panicking.
pub struct LeReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> LeReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}
