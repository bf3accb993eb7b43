//! The manifest: the single, checksummed record of what is committed (segments, files and their
//! committed pages, tombstones, provenance, and which tantivy commit matches). Swapped atomically.

use super::format::{self, corrupt, hex, io_err, IndexError, Result, FORMAT_VERSION};
use super::provenance::Provenance;
use serde::{Deserialize, Serialize};
use std::path::Path;

const FORMAT_NAME: &str = "pagesight-index";
const CHECKSUM_PREFIX: &str = "\nblake3:";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Bumped by every commit; tantivy's commit payload carries the same number.
    pub generation: u64,
    pub provenance: Provenance,
    pub segments: Vec<SegmentEntry>,
    pub files: Vec<FileEntry>,
    /// Deleted page ids as inclusive ranges, sorted and disjoint.
    pub deleted: Vec<(u64, u64)>,
    pub next_page_id: u64,
    pub next_segment_id: u64,
    pub text: TextCommit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub id: u64,
    pub file: String,
    pub pages: u64,
    pub bytes: u64,
}

/// Incremental-ingest bookkeeping for one source file, keyed by its content hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub hash: String,
    pub path: String,
    pub title: Option<String>,
    pub page_count: u32,
    /// 1-based page numbers committed, sorted.
    pub pages: Vec<u32>,
    pub complete: bool,
    /// Unix seconds of the first commit of this file.
    pub ingested_at: u64,
}

/// The tantivy commit this manifest agrees with: its payload is our generation, and the bytes of
/// its meta.json hash to `meta_hash`. Any other tantivy state is ignored and rebuilt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextCommit {
    pub opstamp: u64,
    pub meta_hash: String,
}

impl Manifest {
    pub fn new(provenance: Provenance) -> Self {
        Self {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            generation: 0,
            provenance,
            segments: Vec::new(),
            files: Vec::new(),
            deleted: Vec::new(),
            next_page_id: 0,
            next_segment_id: 1,
            text: TextCommit {
                opstamp: 0,
                meta_hash: String::new(),
            },
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec_pretty(self).expect("manifest serialises");
        let sum = blake3::hash(&body);
        body.extend_from_slice(CHECKSUM_PREFIX.as_bytes());
        body.extend_from_slice(hex(sum.as_bytes()).as_bytes());
        body.push(b'\n');
        body
    }

    /// Parses and checks a manifest's bytes; `path` only names the file in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let split = find_last(bytes, CHECKSUM_PREFIX.as_bytes());
        // Check the identity first so a foreign or newer file gets the right message even when
        // its checksum convention differs from ours.
        let body = split.map(|i| &bytes[..i]).unwrap_or(bytes);
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            if bytes.first() == Some(&b'{') {
                corrupt(path, format!("manifest is not valid JSON ({e})"))
            } else {
                IndexError::Foreign {
                    path: path.into(),
                    what: "not a JSON manifest".into(),
                }
            }
        })?;
        match value.get("format").and_then(|v| v.as_str()) {
            Some(FORMAT_NAME) => {}
            Some(other) if !other.starts_with("pagesight") => {
                return Err(IndexError::Foreign {
                    path: path.into(),
                    what: format!("format {other:?}"),
                })
            }
            Some(_) | None => return Err(corrupt(path, "manifest has no valid format name")),
        }
        let version = value.get("format_version").and_then(|v| v.as_u64());
        match version {
            Some(v) if v > FORMAT_VERSION as u64 => {
                return Err(IndexError::NewerVersion {
                    path: path.into(),
                    found: v.min(u32::MAX as u64) as u32,
                })
            }
            Some(v) if v == FORMAT_VERSION as u64 => {}
            _ => return Err(corrupt(path, "manifest format version missing or invalid")),
        }
        let i = split.ok_or_else(|| corrupt(path, "manifest checksum line missing"))?;
        let tail = &bytes[i + CHECKSUM_PREFIX.len()..];
        let expected = tail.strip_suffix(b"\n").unwrap_or(tail);
        let actual = hex(blake3::hash(body).as_bytes());
        if expected != actual.as_bytes() {
            return Err(corrupt(path, "manifest checksum mismatch"));
        }
        let m: Manifest = serde_json::from_value(value)
            .map_err(|e| corrupt(path, format!("manifest fields invalid ({e})")))?;
        m.validate(path)?;
        Ok(m)
    }

    /// Internal consistency that the checksum cannot vouch for (a buggy writer, a hand edit).
    fn validate(&self, path: &Path) -> Result<()> {
        if self.provenance.dim == 0 || self.provenance.dim > 65536 {
            return Err(corrupt(
                path,
                format!("vector dim {} is out of range", self.provenance.dim),
            ));
        }
        for f in &self.files {
            if format::parse_hash_hex(&f.hash).is_none() {
                return Err(corrupt(
                    path,
                    format!("file hash {:?} is not 64 hex digits", f.hash),
                ));
            }
            if f.pages.windows(2).any(|w| w[0] >= w[1]) {
                return Err(corrupt(
                    path,
                    format!("pages of {} are not sorted and unique", f.path),
                ));
            }
        }
        if self.deleted.iter().any(|&(a, b)| a > b)
            || self.deleted.windows(2).any(|w| w[0].1 >= w[1].0)
        {
            return Err(corrupt(
                path,
                "tombstone ranges are not sorted and disjoint",
            ));
        }
        for s in &self.segments {
            if s.file != segment_file_name(s.id) {
                return Err(corrupt(
                    path,
                    format!("segment {} has unexpected file name {:?}", s.id, s.file),
                ));
            }
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(format::MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        Self::decode(&bytes, &path)
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
        format::atomic_write(
            dir,
            format::MANIFEST_FILE,
            format::MANIFEST_TMP,
            &self.encode(),
        )
    }

    pub fn is_deleted(&self, page_id: u64) -> bool {
        is_in_ranges(&self.deleted, page_id)
    }

    /// Adds the given ids to the tombstone ranges.
    pub fn delete_pages(&mut self, ids: impl IntoIterator<Item = u64>) {
        let mut all: Vec<u64> = ids.into_iter().collect();
        for &(a, b) in &self.deleted {
            all.extend(a..=b);
        }
        all.sort_unstable();
        all.dedup();
        self.deleted = to_ranges(&all);
    }

    pub fn file(&self, hash: &[u8; 32]) -> Option<&FileEntry> {
        let h = hex(hash);
        self.files.iter().find(|f| f.hash == h)
    }

    pub fn file_mut(&mut self, hash: &[u8; 32]) -> Option<&mut FileEntry> {
        let h = hex(hash);
        self.files.iter_mut().find(|f| f.hash == h)
    }
}

pub fn segment_file_name(id: u64) -> String {
    format!("seg-{id:010}.psv")
}

pub fn is_in_ranges(ranges: &[(u64, u64)], x: u64) -> bool {
    let i = ranges.partition_point(|&(_, b)| b < x);
    ranges.get(i).is_some_and(|&(a, _)| a <= x)
}

pub fn to_ranges(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &x in sorted {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == x => *b = x,
            _ => out.push((x, x)),
        }
    }
    out
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ranges_roundtrip() {
        let r = to_ranges(&[1, 2, 3, 7, 9, 10]);
        assert_eq!(r, vec![(1, 3), (7, 7), (9, 10)]);
        assert!(
            is_in_ranges(&r, 2)
                && is_in_ranges(&r, 7)
                && !is_in_ranges(&r, 8)
                && !is_in_ranges(&r, 0)
        );
    }
}
