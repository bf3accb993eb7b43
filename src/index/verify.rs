//! `verify`: recompute every checksum and cross-check the manifest, the segments and tantivy,
//! collecting every problem rather than stopping at the first.

use super::format::{self, Result, SEGMENTS_DIR, TEXT_DIR};
use super::manifest::Manifest;
use super::segment::SegmentReader;
use super::snapshot::build_snapshot;
use super::text::{disk_commit, TextStore};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub ok: bool,
    /// Damage or inconsistency: searching this index may fail until it is repaired.
    pub problems: Vec<String>,
    /// Harmless findings (leftovers of an interrupted commit, cleaned up on the next ingest).
    pub notes: Vec<String>,
    pub segments_checked: usize,
    pub pages_checked: u64,
    pub bytes_checked: u64,
    pub text_docs: u64,
}

pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let mut r = VerifyReport {
        path: dir.into(),
        ..Default::default()
    };
    let manifest = match super::snapshot::load_manifest(dir) {
        Ok(m) => m,
        Err(e) => {
            r.problems.push(e.to_string());
            return Ok(r);
        }
    };
    let mut segments = Vec::new();
    for s in &manifest.segments {
        let path = dir.join(SEGMENTS_DIR).join(&s.file);
        match SegmentReader::open(&path, manifest.provenance.dim, true) {
            Ok(seg) => {
                r.segments_checked += 1;
                r.pages_checked += seg.entries.len() as u64;
                r.bytes_checked += seg.file_len();
                if seg.entries.len() as u64 != s.pages || seg.file_len() != s.bytes {
                    r.problems.push(format!(
                        "{}: {} pages / {} bytes, the manifest says {} / {}",
                        path.display(),
                        seg.entries.len(),
                        seg.file_len(),
                        s.pages,
                        s.bytes
                    ));
                }
                for (i, _) in seg.entries.iter().enumerate() {
                    if let Err(e) = seg.meta(i) {
                        r.problems.push(e.to_string());
                        break;
                    }
                }
                segments.push(Arc::new(seg));
            }
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    orphans(dir, &manifest, &mut r);
    check_text(dir, &manifest, &segments, &mut r);
    r.ok = r.problems.is_empty();
    Ok(r)
}

fn orphans(dir: &Path, m: &Manifest, r: &mut VerifyReport) {
    let listed: HashSet<&str> = m.segments.iter().map(|s| s.file.as_str()).collect();
    if let Ok(rd) = std::fs::read_dir(dir.join(SEGMENTS_DIR)) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !listed.contains(name.as_str()) {
                r.notes.push(format!("segments/{name} is not in the manifest (an interrupted commit); removed on the next ingest"));
            }
        }
    }
    if dir.join(format::MANIFEST_TMP).exists() {
        r.notes
            .push("MANIFEST.tmp left by an interrupted commit; removed on the next ingest".into());
    }
}

fn check_text(dir: &Path, m: &Manifest, segments: &[Arc<SegmentReader>], r: &mut VerifyReport) {
    let text_dir = dir.join(TEXT_DIR);
    match disk_commit(&text_dir) {
        Some((payload, hash))
            if payload == m.generation.to_string() && hash == m.text.meta_hash => {}
        Some((payload, _)) if payload.parse::<u64>().is_ok_and(|p| p > m.generation) => {
            r.notes.push(format!("text index is at commit {payload}, the manifest at {} (interrupted commit): searches rebuild it in memory, the next ingest on disk", m.generation));
            return;
        }
        _ => {
            r.problems.push(format!(
                "{}: meta.json is not the state the manifest recorded (damaged)",
                text_dir.display()
            ));
            return;
        }
    }
    let store = match TextStore::open_dir(&text_dir, false) {
        Ok(s) => s,
        Err(e) => {
            r.problems.push(e.to_string());
            return;
        }
    };
    r.text_docs = store.num_docs();
    if segments.len() != m.segments.len() {
        return; // segment problems already reported; the cross-check would only repeat them
    }
    match build_snapshot(m, segments.to_vec(), &store, dir) {
        Ok(snap) => match store.all_page_ids() {
            Ok(mut ids) => {
                ids.sort_unstable();
                let mut live: Vec<u64> = snap.by_id.keys().copied().collect();
                live.sort_unstable();
                if ids != live {
                    r.problems.push(format!(
                        "text index holds {} pages, the segments {} live pages: they disagree",
                        ids.len(),
                        live.len()
                    ));
                }
            }
            Err(e) => r.problems.push(e.to_string()),
        },
        Err(e) => r.problems.push(e.to_string()),
    }
}
