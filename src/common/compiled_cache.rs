//! Compiled GPU kernels kept between runs, so that a start with warm caches does not compile our
//! CUDA C again: one file per (source, name, architecture, compiler, options), named by the hash
//! of all of them and checksummed; a file that fails its check is compiled again and replaced.
//! Written atomically (`fs::write_atomic`), so two processes starting at once at worst both
//! compile. The driver's own cache (`CUDA_CACHE_PATH`) keeps the library's PTX JIT; this keeps ours.

use crate::fs::write_atomic;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PSCUBIN1";

/// The cache file for these key parts.
fn file_for(dir: &Path, key_parts: &[&[u8]]) -> PathBuf {
    let mut h = blake3::Hasher::new();
    for part in key_parts {
        // Lengths first: ("ab", "c") and ("a", "bc") are different keys.
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    dir.join(format!("{}.cubin", &h.finalize().to_hex()[..32]))
}

/// The bytes a file holds if it is whole (magic, checksum of the rest, the rest).
fn read_checked(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let (head, body) = (bytes.get(..40)?, bytes.get(40..)?);
    (head[..8] == MAGIC[..] && head[8..40] == *blake3::hash(body).as_bytes()).then(|| body.to_vec())
}

/// Where a compiled module comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Cache,
    Compiled,
}

/// The compiled bytes for `key_parts`: read from `dir` when an earlier run kept them, else
/// `compile`d now and kept (a failure to keep them is logged, never an error: the kernels work).
/// No `dir`: always compiled.
pub fn cached_or_compiled<E>(
    dir: Option<&Path>,
    key_parts: &[&[u8]],
    compile: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<(Vec<u8>, Source), E> {
    let Some(dir) = dir else {
        return compile().map(|b| (b, Source::Compiled));
    };
    let path = file_for(dir, key_parts);
    if let Some(bytes) = read_checked(&path) {
        return Ok((bytes, Source::Cache));
    }
    let bytes = compile()?;
    let mut file = Vec::with_capacity(40 + bytes.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(blake3::hash(&bytes).as_bytes());
    file.extend_from_slice(&bytes);
    let kept = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| write_atomic(&path, &file).map_err(|e| e.to_string()));
    if let Err(e) = kept {
        tracing::warn!("compiled kernels not kept in {}: {e}", dir.display());
    }
    Ok((bytes, Source::Compiled))
}

/// Forgets the module for `key_parts` (it was read but the driver refused it).
pub fn forget(dir: &Path, key_parts: &[&[u8]]) {
    let _ = std::fs::remove_file(file_for(dir, key_parts));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn compiled_once_then_read_and_a_damaged_file_is_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let compiles = Cell::new(0);
        let compile = |out: &'static [u8]| {
            compiles.set(compiles.get() + 1);
            Ok::<_, String>(out.to_vec())
        };
        let key: [&[u8]; 3] = [b"__global__ void k() {}", b"sm_90", b"nvrtc 13.0"];
        let got = cached_or_compiled(Some(dir.path()), &key, || compile(b"cubin-1")).unwrap();
        assert_eq!(got, (b"cubin-1".to_vec(), Source::Compiled));
        let got = cached_or_compiled(Some(dir.path()), &key, || compile(b"never")).unwrap();
        assert_eq!(got, (b"cubin-1".to_vec(), Source::Cache));
        assert_eq!(compiles.get(), 1);

        // Another architecture is another module.
        let other: [&[u8]; 3] = [key[0], b"sm_80", key[2]];
        let got = cached_or_compiled(Some(dir.path()), &other, || compile(b"cubin-80")).unwrap();
        assert_eq!(got.1, Source::Compiled);

        // One flipped byte: not trusted, compiled again and replaced.
        let path = file_for(dir.path(), &key);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let got = cached_or_compiled(Some(dir.path()), &key, || compile(b"cubin-2")).unwrap();
        assert_eq!(got, (b"cubin-2".to_vec(), Source::Compiled));
        let got = cached_or_compiled(Some(dir.path()), &key, || compile(b"never")).unwrap();
        assert_eq!(got, (b"cubin-2".to_vec(), Source::Cache));

        forget(dir.path(), &key);
        let got = cached_or_compiled(Some(dir.path()), &key, || compile(b"cubin-3")).unwrap();
        assert_eq!(got.1, Source::Compiled);
        // Without a folder nothing is kept.
        let got = cached_or_compiled(None, &key, || compile(b"x")).unwrap();
        assert_eq!(got.1, Source::Compiled);
        assert_eq!(compiles.get(), 5);
    }

    #[test]
    fn key_parts_are_not_confused_by_where_they_split() {
        let d = Path::new("/x");
        assert_ne!(file_for(d, &[b"ab", b"c"]), file_for(d, &[b"a", b"bc"]));
    }
}
