//! File-system durability shared by the index's commits, the quantised-weight cache and the
//! app's exports: fsync of a folder, and the one atomic replacement of a file (temporary file in
//! the same folder, fsync, rename over, fsync the folder).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// fsync a directory so a rename or a new file inside it survives a power cut.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|f| f.sync_all())
}

/// The steps of an atomic write, in order; a caller of `write_atomic_via` hears of each just
/// before it runs (the index traces them and injects write failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicStep {
    /// Creating the temporary file.
    Create,
    /// Writing the bytes into it.
    Write,
    /// fsync of the temporary file.
    Fsync,
    /// Renaming it over the destination: the new content becomes visible.
    Rename,
    /// fsync of the folder: the rename becomes durable.
    FsyncDir,
}

/// An atomic write that failed: at which step, on which path (the temporary file, the
/// destination for the rename, the folder for its fsync), and the OS error, kept whole so a
/// caller can tell a full disk from other failures.
#[derive(Debug)]
pub struct AtomicWriteError {
    pub step: AtomicStep,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.step {
            AtomicStep::Create => "creating",
            AtomicStep::Write => "writing",
            AtomicStep::Fsync => "fsync of",
            AtomicStep::Rename => "renaming into",
            AtomicStep::FsyncDir => "fsync of folder",
        };
        write!(f, "{what} {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for AtomicWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Replaces `path` with `bytes` so that a crash or a power cut at any point leaves either the old
/// file (or none) or the whole new one, never a part: the bytes go to a temporary file beside it
/// (a unique hidden name, removed if anything fails), which is fsynced and renamed over `path`,
/// then the folder is fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
    write_atomic_via(path, &tmp, bytes, |_| Ok(()))
}

/// `write_atomic` through a temporary file the caller names (it must be in `path`'s folder, and
/// no one else may write it meanwhile), calling `before` ahead of each step; an error `before`
/// returns fails that step.
pub fn write_atomic_via(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    mut before: impl FnMut(AtomicStep) -> std::io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let written = (|| {
        before(AtomicStep::Create).map_err(fail(AtomicStep::Create, tmp))?;
        let mut f = File::create(tmp).map_err(fail(AtomicStep::Create, tmp))?;
        before(AtomicStep::Write)
            .and_then(|()| f.write_all(bytes))
            .map_err(fail(AtomicStep::Write, tmp))
    })();
    if let Err(e) = written {
        // A failed create leaves no file of ours to remove.
        if e.step != AtomicStep::Create {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    persist_via(tmp, path, before)
}

/// Makes `tmp`, a file already written in full on the same file system as `path`, the new
/// `path` durably: fsync of `tmp`, rename over `path`, fsync of `path`'s folder (for writers that
/// produce the file themselves, such as a serialiser that takes a path). Until the rename the
/// old `path` stays; a failure before it removes `tmp`.
pub fn persist(tmp: &Path, path: &Path) -> Result<(), AtomicWriteError> {
    persist_via(tmp, path, |_| Ok(()))
}

fn persist_via(
    tmp: &Path,
    path: &Path,
    mut before: impl FnMut(AtomicStep) -> std::io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let renamed = (|| {
        before(AtomicStep::Fsync)
            .and_then(|()| File::open(tmp)?.sync_all())
            .map_err(fail(AtomicStep::Fsync, tmp))?;
        before(AtomicStep::Rename)
            .and_then(|()| std::fs::rename(tmp, path))
            .map_err(fail(AtomicStep::Rename, path))
    })();
    if renamed.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    renamed?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    before(AtomicStep::FsyncDir)
        .and_then(|()| fsync_dir(dir))
        .map_err(fail(AtomicStep::FsyncDir, dir))
}

/// Tags an OS error with its step and path.
fn fail(step: AtomicStep, path: &Path) -> impl FnOnce(std::io::Error) -> AtomicWriteError {
    let path = path.to_path_buf();
    move |source| AtomicWriteError { step, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_nothing_else() {
        let dir = std::env::temp_dir().join(format!("pagesight-fs-{}-a", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("runs.json");
        write_atomic(&path, b"first, and longer than the second").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(&dir), ["runs.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_step_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = std::env::temp_dir().join(format!("pagesight-fs-{}-b", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (path, tmp) = (dir.join("out.csv"), dir.join("out.csv.tmp"));
        std::fs::write(&path, b"old").unwrap();
        for failing in [AtomicStep::Write, AtomicStep::Fsync, AtomicStep::Rename] {
            let mut seen = Vec::new();
            let err = write_atomic_via(&path, &tmp, b"new", |s| {
                seen.push(s);
                if s == failing {
                    Err(std::io::Error::from_raw_os_error(28))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            assert_eq!(err.step, failing);
            assert_eq!(err.source.raw_os_error(), Some(28), "the OS error is kept");
            assert_eq!(
                &err.path,
                if failing == AtomicStep::Rename {
                    &path
                } else {
                    &tmp
                }
            );
            assert_eq!(seen.last(), Some(&failing));
            assert_eq!(
                std::fs::read(&path).unwrap(),
                b"old",
                "failing at {failing:?}"
            );
            assert_eq!(entries(&dir), ["out.csv"], "failing at {failing:?}");
        }
        let mut seen = Vec::new();
        write_atomic_via(&path, &tmp, b"new", |s| {
            seen.push(s);
            Ok(())
        })
        .unwrap();
        use AtomicStep::*;
        assert_eq!(seen, [Create, Write, Fsync, Rename, FsyncDir]);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn persist_moves_a_written_file_into_place() {
        let dir = std::env::temp_dir().join(format!("pagesight-fs-{}-c", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let (path, tmp) = (dir.join("cache.bin"), dir.join("work/cache.bin"));
        std::fs::write(&path, b"old").unwrap();
        let err = persist(&tmp, &path).unwrap_err();
        assert_eq!(err.step, AtomicStep::Fsync, "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        std::fs::write(&tmp, b"new").unwrap();
        persist(&tmp, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!tmp.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error_on_the_temporary_file() {
        let path = std::env::temp_dir()
            .join(format!("pagesight-fs-{}-missing", std::process::id()))
            .join("x.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.step, AtomicStep::Create);
        assert!(!path.exists());
    }
}
