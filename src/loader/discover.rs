//! Finding the PDFs under a folder: a recursive walk that skips hidden entries, follows symlinks
//! without ever looping, and identifies every file by the BLAKE3 hash of its content (so a renamed
//! or moved file is recognised and a changed one detected).

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One PDF found by [`discover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdfFile {
    /// The path as reached from the root (symlinks not resolved).
    pub path: PathBuf,
    /// BLAKE3 hash of the file's bytes.
    pub hash: [u8; 32],
    pub size: u64,
}

impl PdfFile {
    pub fn hash_hex(&self) -> String {
        blake3::Hash::from_bytes(self.hash).to_hex().to_string()
    }
}

/// What a walk found: the PDFs in a deterministic order (sorted by path), and the entries that
/// could not be read (an unreadable folder or file does not stop the walk).
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub files: Vec<PdfFile>,
    pub errors: Vec<(PathBuf, String)>,
}

/// `.pdf`, any case.
pub fn is_pdf_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Streams the file through BLAKE3 (constant memory whatever the file size).
pub fn hash_file(path: &Path) -> Result<([u8; 32], u64)> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        if let Some(e) = super::fault::injected_read_error(path) {
            return Err(e).with_context(|| format!("cannot read {}", path.display()));
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((*hasher.finalize().as_bytes(), size))
}

/// Walks `root` (a folder, or a single PDF file). Fails only when `root` itself cannot be used.
pub fn discover(root: &Path) -> Result<Discovery> {
    let meta =
        fs::metadata(root).with_context(|| format!("cannot read folder {}", root.display()))?;
    let mut out = Discovery::default();
    if meta.is_file() {
        if !is_pdf_name(root) {
            bail!("{} is neither a folder nor a .pdf file", root.display());
        }
        let (hash, size) = hash_file(root)?;
        out.files.push(PdfFile {
            path: root.to_path_buf(),
            hash,
            size,
        });
        return Ok(out);
    }
    if !meta.is_dir() {
        bail!("{} is neither a folder nor a .pdf file", root.display());
    }
    let mut visited = HashSet::new();
    let canon = root
        .canonicalize()
        .with_context(|| format!("cannot resolve folder {}", root.display()))?;
    visited.insert(canon);
    let mut candidates = Vec::new();
    fs::read_dir(root).with_context(|| format!("cannot list folder {}", root.display()))?;
    walk(root, &mut visited, &mut candidates, &mut out.errors);
    candidates.sort();
    candidates.dedup();
    for path in candidates {
        match hash_file(&path) {
            Ok((hash, size)) => out.files.push(PdfFile { path, hash, size }),
            Err(e) => out.errors.push((path, format!("{e:#}"))),
        }
    }
    out.errors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Why a path cannot be reached, in words: symlink loops and broken links by name.
fn describe_unreachable(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            "cannot read: symbolic link loop (too many levels of symbolic links)".into()
        }
        Some(libc::ENOENT) => {
            "cannot read: broken symbolic link (No such file or directory)".into()
        }
        _ => format!("cannot read: {e}"),
    }
}

/// "a named pipe", "a character device", …
fn describe_file_type(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a named pipe"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Depth-first walk. `visited` holds the canonical path of every folder entered, so a symlink
/// pointing back up the tree (or two links to one folder) is entered once only.
fn walk(
    dir: &Path,
    visited: &mut HashSet<PathBuf>,
    found: &mut Vec<PathBuf>,
    errors: &mut Vec<(PathBuf, String)>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push((dir.to_path_buf(), format!("cannot list folder: {e}")));
            return;
        }
    };
    let mut children: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) if !is_hidden(&e.file_name()) => children.push(e.path()),
            Ok(_) => {}
            Err(e) => errors.push((dir.to_path_buf(), format!("cannot read folder entry: {e}"))),
        }
    }
    children.sort();
    for path in children {
        // `metadata` follows symlinks: a dangling link is reported, a link to a folder is walked.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                if is_pdf_name(&path) || path.is_symlink() {
                    errors.push((path, describe_unreachable(&e)));
                }
                continue;
            }
        };
        if meta.is_dir() {
            match path.canonicalize() {
                Ok(c) => {
                    if visited.insert(c) {
                        walk(&path, visited, found, errors);
                    }
                }
                Err(e) => errors.push((path, format!("cannot resolve folder: {e}"))),
            }
        } else if is_pdf_name(&path) {
            if meta.is_file() {
                found.push(path);
            } else {
                // Opening a named pipe would block forever and a device never ends: say what
                // it is instead of reading it.
                let what = describe_file_type(&meta.file_type());
                errors.push((path, format!("not a regular file ({what}); skipped")));
            }
        }
    }
}
