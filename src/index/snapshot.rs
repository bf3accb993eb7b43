//! Opening committed state: the manifest, its segments, the snapshot a commit made visible
//! (cross-checked against the manifest's file table), and the text store reconciled with it.
//! Shared by `Index` (open, commit, compact) and `verify`.

use super::file_identity::FileIdentity;
use super::format::{self, corrupt, hex, io_err, IndexError, Result, SEGMENTS_DIR};
use super::manifest::{FileEntry, Manifest, TextCommit};
use super::search::{PageRef, Snapshot};
use super::segment::SegmentReader;
use super::text::{disk_commit, TextDoc, TextStore};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn load_manifest(dir: &Path) -> Result<Manifest> {
    if !dir.join(format::MANIFEST_FILE).exists() {
        return Err(IndexError::Invalid(format!(
            "no pagesight index at {} (no MANIFEST); ingest into it first",
            dir.display()
        )));
    }
    Manifest::load(dir)
}

/// The manifest's segments, mapped and checked (every page checksum with `verify_data`). A
/// segment in `reuse` whose file is unchanged is taken as it is: it was checked when it was opened.
pub(crate) fn open_segments(
    dir: &Path,
    m: &Manifest,
    verify_data: bool,
    reuse: &[Arc<SegmentReader>],
) -> Result<Vec<Arc<SegmentReader>>> {
    m.segments
        .iter()
        .map(|s| {
            let path = dir.join(SEGMENTS_DIR).join(&s.file);
            let unchanged = |r: &&Arc<SegmentReader>| {
                r.path == path && FileIdentity::of(&path).is_ok_and(|now| now == r.identity)
            };
            let r = match reuse.iter().find(unchanged) {
                Some(r) => r.clone(),
                None => Arc::new(SegmentReader::open(&path, m.provenance.dim, verify_data)?),
            };
            if r.entries.len() as u64 != s.pages || r.file_len() != s.bytes {
                return Err(corrupt(
                    &path,
                    format!(
                        "holds {} pages / {} bytes, the manifest says {} / {}",
                        r.entries.len(),
                        r.file_len(),
                        s.pages,
                        s.bytes
                    ),
                ));
            }
            Ok(r)
        })
        .collect()
}

/// Live pages of the manifest, cross-checked against its file table: every committed page of
/// every file present exactly once, nothing else.
pub(crate) fn build_snapshot(
    m: &Manifest,
    segments: Vec<Arc<SegmentReader>>,
    text: &TextStore,
    dir: &Path,
) -> Result<Snapshot> {
    let mpath = dir.join(format::MANIFEST_FILE);
    let mut pages = Vec::new();
    let mut by_id = HashMap::new();
    let mut seen: HashSet<([u8; 32], u32)> = HashSet::new();
    let files: HashMap<[u8; 32], FileEntry> = m
        .files
        .iter()
        .filter_map(|f| Some((format::parse_hash_hex(&f.hash)?, f.clone())))
        .collect();
    for (si, seg) in segments.iter().enumerate() {
        for (ei, e) in seg.entries.iter().enumerate() {
            if m.is_deleted(e.page_id) {
                continue;
            }
            if e.page_id >= m.next_page_id || by_id.insert(e.page_id, pages.len()).is_some() {
                return Err(corrupt(
                    &seg.path,
                    format!(
                        "page id {} is duplicated or beyond the manifest's",
                        e.page_id
                    ),
                ));
            }
            if !seen.insert((e.file_hash, e.page_no)) {
                return Err(corrupt(
                    &seg.path,
                    format!(
                        "page {} of file {} is stored twice",
                        e.page_no,
                        hex(&e.file_hash)
                    ),
                ));
            }
            let listed = files
                .get(&e.file_hash)
                .is_some_and(|f| f.pages.binary_search(&e.page_no).is_ok());
            if !listed {
                return Err(corrupt(
                    &mpath,
                    format!(
                        "page {} of file {} is in {} but not in the manifest",
                        e.page_no,
                        hex(&e.file_hash),
                        seg.path.display()
                    ),
                ));
            }
            pages.push(PageRef {
                seg: si as u32,
                idx: ei as u32,
            });
        }
    }
    let listed: usize = m.files.iter().map(|f| f.pages.len()).sum();
    if listed != pages.len() {
        return Err(corrupt(
            &mpath,
            format!(
                "lists {listed} committed pages, the segments hold {}",
                pages.len()
            ),
        ));
    }
    Ok(Snapshot {
        provenance: m.provenance.clone(),
        generation: m.generation,
        instance: super::search::next_instance(),
        segments,
        pages,
        by_id,
        files,
        text: text.view(),
    })
}

pub(crate) fn text_commit(
    text: &mut TextStore,
    generation: u64,
    text_dir: &Path,
    merge: bool,
) -> Result<TextCommit> {
    super::hooks::step("commit text (tantivy; fsyncs inside)");
    let opstamp = text.commit(generation, merge)?;
    let (_, meta_hash) = disk_commit(text_dir)
        .ok_or_else(|| corrupt(text_dir, "meta.json unreadable right after commit"))?;
    Ok(TextCommit { opstamp, meta_hash })
}

/// Refills a text store from the segments' live pages.
pub(crate) fn rebuild_text(
    mut store: TextStore,
    m: &Manifest,
    segments: &[Arc<SegmentReader>],
) -> Result<TextStore> {
    store.delete_all()?;
    let files: HashMap<&str, &FileEntry> = m.files.iter().map(|f| (f.hash.as_str(), f)).collect();
    for seg in segments {
        for (i, e) in seg.entries.iter().enumerate() {
            if m.is_deleted(e.page_id) {
                continue;
            }
            let h = hex(&e.file_hash);
            let f = files
                .get(h.as_str())
                .ok_or_else(|| corrupt(&seg.path, format!("page of unknown file {h}")))?;
            let meta = seg.meta(i)?;
            store.add(&TextDoc {
                page_id: e.page_id,
                file_hash: &e.file_hash,
                path: &f.path,
                title: f.title.as_deref(),
                page: e.page_no,
                ingested_at: f.ingested_at,
                text: &meta.text,
            })?;
        }
    }
    // Committed under the next generation, not the manifest's: a process killed before the
    // manifest records this rebuild leaves a text state that reads as an interrupted commit
    // (rebuilt again on the next open), never as the manifest's own generation with another
    // hash, which `index verify` must call damaged.
    store.commit(m.generation + 1, false)?;
    Ok(store)
}

/// Deletes segment files no manifest refers to (written by a commit that never completed).
pub(crate) fn remove_orphans(dir: &Path, m: &Manifest) -> Result<()> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let listed: HashSet<&str> = m.segments.iter().map(|s| s.file.as_str()).collect();
    if let Ok(rd) = std::fs::read_dir(&seg_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !listed.contains(name.as_str()) {
                std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
            }
        }
    }
    let tmp = dir.join(format::MANIFEST_TMP);
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(io_err(&tmp))?;
    }
    Ok(())
}
