//! `Index`: one folder, opened for reading or writing. Ingest buffers pages in memory; `commit`
//! writes them as one new segment, commits tantivy with our next generation as its payload, then
//! swaps the manifest. The manifest is the truth: a segment it does not list is an orphan
//! (removed on the next writable open); a tantivy state it did not record is rebuilt.

use super::format::{self, hex, io_err, IndexError, Result, SEGMENTS_DIR, TEXT_DIR};
use super::hooks;
use super::manifest::{segment_file_name, FileEntry, Manifest, SegmentEntry};
use super::pooling;
use super::provenance::Provenance;
use super::search::{Searcher, Snapshot};
use super::segment::{write_segment, PageData, PageMeta, SegmentReader};
use super::snapshot::{
    build_snapshot, load_manifest, open_segments, rebuild_text, remove_orphans, text_commit,
};
use super::text::{disk_commit, TextDoc, TextStore};
use super::vectors;
use rayon::prelude::*;
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Ingest bookkeeping of one source file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileState {
    pub path: PathBuf,
    pub title: Option<String>,
    pub page_count: u32,
    /// Pages present (committed, or added through this handle and not yet committed).
    pub pages_committed: u32,
    /// The first page not yet present: where a resumed ingest starts.
    pub first_missing_page: Option<u32>,
    pub complete: bool,
}

/// One page to add. `vectors` is `n_tokens × dim` row-major; `image_rows` are the rows that are
/// image-patch tokens, in the row-major order of the `merged_grid` (h, w).
pub struct PageRecord<'a> {
    pub file_hash: [u8; 32],
    /// 1-based.
    pub page: u32,
    pub text: &'a str,
    pub vectors: &'a [f32],
    pub n_tokens: usize,
    pub image_rows: Range<usize>,
    pub merged_grid: (u32, u32),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CommitInfo {
    pub generation: u64,
    pub pages_added: u64,
    pub pages_total: u64,
    pub segment: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Recompute every page checksum on open (all cores); off only for trusted, timed paths.
    pub verify_data: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { verify_data: true }
    }
}

pub struct Index {
    pub(crate) dir: PathBuf,
    /// Working state: the last commit plus this handle's uncommitted changes.
    pub(crate) manifest: Manifest,
    pub(crate) committed: Arc<Snapshot>,
    pub(crate) text: Option<TextStore>,
    read_only: bool,
    pending: Vec<PageData>,
    pool_factor: usize,
    warnings: Vec<String>,
}

/// How long a reader waits for a writer's manifest swap when tantivy is already a commit ahead.
const WRITER_SWAP_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Live pages of a manifest (its file table lists exactly those; `build_snapshot` checks it).
fn live_pages(m: &Manifest) -> u64 {
    m.files.iter().map(|f| f.pages.len() as u64).sum()
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A page's vectors as stored (after pooling), computed in parallel before the serial bookkeeping.
struct PreparedVectors {
    packed: Vec<u16>,
    codes: Vec<u8>,
    n_tokens: u32,
    image_rows: std::ops::Range<u32>,
    members: Vec<Vec<u32>>,
}

/// What a page's text document needs of its file.
struct PageFile {
    path: String,
    title: Option<String>,
    ingested_at: u64,
}

impl Index {
    /// Opens for reading (search, stats). Never writes; a text index that does not match the
    /// manifest is rebuilt in memory (see `warnings`).
    pub fn open(dir: &Path) -> Result<Index> {
        Self::open_with(dir, OpenOptions::default())
    }

    pub fn open_with(dir: &Path, opts: OpenOptions) -> Result<Index> {
        Self::open_reusing(dir, opts, &[])
    }

    /// `open_with`, taking each segment of `reuse` whose file is unchanged as it is (mapped and
    /// checked already) instead of opening and checking it again.
    pub(crate) fn open_reusing(
        dir: &Path,
        opts: OpenOptions,
        reuse: &[Arc<SegmentReader>],
    ) -> Result<Index> {
        let text_dir = dir.join(TEXT_DIR);
        let deadline = std::time::Instant::now() + WRITER_SWAP_WAIT;
        let (manifest, opened) = loop {
            let manifest = load_manifest(dir)?;
            let on_disk = disk_commit(&text_dir);
            let recorded = (
                manifest.generation.to_string(),
                manifest.text.meta_hash.clone(),
            );
            let opened = (on_disk.as_ref() == Some(&recorded))
                .then(|| TextStore::open_dir(&text_dir, false));
            // A writer between its tantivy commit and its manifest swap leaves tantivy a commit
            // ahead (or, its old files collected, unopenable) for a moment: wait for the swap
            // rather than rebuild the text index in memory. After a crash the wait runs out.
            let ahead = on_disk
                .and_then(|(payload, _)| payload.parse::<u64>().ok())
                .is_some_and(|g| g > manifest.generation);
            let wait = match &opened {
                Some(Ok(_)) => false,
                Some(Err(_)) => true,
                None => ahead,
            };
            if !wait || std::time::Instant::now() >= deadline {
                break (manifest, opened);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let segments = open_segments(dir, &manifest, opts.verify_data, reuse)?;
        let mut warnings = Vec::new();
        let text = match opened {
            Some(Ok(t)) => t,
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "it is not the state the last commit recorded (interrupted commit or damaged meta.json)".into(),
                };
                warnings.push(format!("text index rebuilt in memory: {why}"));
                rebuild_text(TextStore::in_ram()?, &manifest, &segments)?
            }
        };
        let committed = Arc::new(build_snapshot(&manifest, segments, &text, dir)?);
        Ok(Index {
            dir: dir.into(),
            manifest,
            committed,
            text: Some(text),
            read_only: true,
            pending: Vec::new(),
            pool_factor: 1,
            warnings,
        })
    }

    /// What made the vectors of the index at `dir` (its manifest only), or None when there is
    /// no index there yet.
    pub fn provenance_at(dir: &Path) -> Result<Option<Provenance>> {
        if !dir.join(format::MANIFEST_FILE).exists() {
            return Ok(None);
        }
        Ok(Some(load_manifest(dir)?.provenance))
    }

    /// Opens for writing, creating the index when the folder is empty or absent. Refuses vectors
    /// of another model. Cleans up after an interrupted commit.
    pub fn open_or_create(dir: &Path, prov: &Provenance) -> Result<Index> {
        if !dir.join(format::MANIFEST_FILE).exists() {
            return Self::create(dir, prov);
        }
        let mut manifest = load_manifest(dir)?;
        manifest.provenance.check_compatible(prov, dir)?;
        let text_dir = dir.join(TEXT_DIR);
        let mut warnings = Vec::new();
        let on_disk = disk_commit(&text_dir);
        let matches = on_disk
            == Some((
                manifest.generation.to_string(),
                manifest.text.meta_hash.clone(),
            ));
        // Opening the text store for writing takes tantivy's writer lock: one writer per index.
        // Only then is it safe to delete files no manifest lists.
        let opened = match TextStore::open_dir(&text_dir, true) {
            Err(busy @ IndexError::Busy { .. }) => return Err(busy),
            opened => opened,
        };
        remove_orphans(dir, &manifest)?;
        let segments = open_segments(dir, &manifest, true, &[])?;
        let text = match opened {
            Ok(t) if matches => t,
            opened => {
                let why = match &opened {
                    Err(e) => e.to_string(),
                    Ok(_) => "it is not the state the last commit recorded".into(),
                };
                warnings.push(format!("text index rebuilt: {why}"));
                let store = match opened {
                    Ok(t) => t,
                    Err(_) => {
                        std::fs::remove_dir_all(&text_dir).map_err(io_err(&text_dir))?;
                        TextStore::open_dir(&text_dir, true)?
                    }
                };
                let mut store = rebuild_text(store, &manifest, &segments)?;
                manifest.generation += 1;
                hooks::commit_begin(manifest.generation, live_pages(&manifest));
                manifest.text = text_commit(&mut store, manifest.generation, &text_dir, false)?;
                manifest.store(dir)?;
                hooks::commit_end(manifest.generation, live_pages(&manifest));
                store
            }
        };
        let committed = Arc::new(build_snapshot(&manifest, segments, &text, dir)?);
        Ok(Index {
            dir: dir.into(),
            manifest,
            committed,
            text: Some(text),
            read_only: false,
            pending: Vec::new(),
            pool_factor: 1,
            warnings,
        })
    }

    fn create(dir: &Path, prov: &Provenance) -> Result<Index> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ours = [SEGMENTS_DIR, TEXT_DIR, format::MANIFEST_TMP];
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let name = entry.map_err(io_err(dir))?.file_name();
            if !ours.iter().any(|o| name == *o) {
                return Err(IndexError::Foreign {
                    path: dir.into(),
                    what: format!("the folder holds {name:?} but no MANIFEST; use an empty folder for a new index"),
                });
            }
        }
        if prov.dim == 0 {
            return Err(IndexError::Invalid("provenance dim must be > 0".into()));
        }
        // Leftovers of a creation that never committed.
        for sub in [SEGMENTS_DIR, TEXT_DIR] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        let segs = dir.join(SEGMENTS_DIR);
        std::fs::create_dir_all(&segs).map_err(io_err(&segs))?;
        let text = TextStore::open_dir(&dir.join(TEXT_DIR), true)?;
        let manifest = Manifest::new(prov.clone());
        let committed = Arc::new(build_snapshot(&manifest, Vec::new(), &text, dir)?);
        let mut ix = Index {
            dir: dir.into(),
            manifest,
            committed,
            text: Some(text),
            read_only: false,
            pending: Vec::new(),
            pool_factor: 1,
            warnings: Vec::new(),
        };
        ix.commit()?;
        Ok(ix)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn provenance(&self) -> &Provenance {
        &self.manifest.provenance
    }

    /// Things open repaired or worked around (e.g. a rebuilt text index).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Pool image vectors by this factor at ingest (1 = off).
    pub fn set_pool_factor(&mut self, factor: usize) {
        self.pool_factor = factor.max(1);
    }

    pub fn file_state(&self, hash: &[u8; 32]) -> Option<FileState> {
        self.manifest.file(hash).map(to_state)
    }

    pub fn files(&self) -> Vec<([u8; 32], FileState)> {
        self.manifest
            .files
            .iter()
            .filter_map(|f| Some((format::parse_hash_hex(&f.hash)?, to_state(f))))
            .collect()
    }

    fn writable(&mut self) -> Result<&mut TextStore> {
        let dir = self.dir.clone();
        match self.text.as_mut() {
            Some(t) if !self.read_only => Ok(t),
            _ => Err(IndexError::Invalid(format!(
                "index {} was opened read-only",
                dir.display()
            ))),
        }
    }

    /// Starts (or resumes) a file. The same hash keeps its committed pages.
    pub fn begin_file(
        &mut self,
        hash: &[u8; 32],
        path: &Path,
        title: Option<&str>,
        page_count: u32,
    ) -> Result<()> {
        self.writable()?;
        let p = path.to_string_lossy().into_owned();
        match self.manifest.file_mut(hash) {
            Some(f) => {
                if f.page_count != page_count {
                    return Err(IndexError::Invalid(format!(
                        "{}: {} pages now, {} when first ingested, yet the same content hash",
                        path.display(),
                        page_count,
                        f.page_count
                    )));
                }
                f.path = p;
                f.title = title.map(str::to_string);
            }
            None => self.manifest.files.push(FileEntry {
                hash: hex(hash),
                path: p,
                title: title.map(str::to_string),
                page_count,
                pages: Vec::new(),
                complete: false,
                ingested_at: now_secs(),
            }),
        }
        Ok(())
    }

    pub fn add_page(&mut self, rec: PageRecord<'_>) -> Result<()> {
        self.add_pages(std::slice::from_ref(&rec))
    }

    /// `add_page` for each record in order, the vector work (pooling, f16 packing, sign codes)
    /// on all cores. Every record is checked first: a refused one leaves none of them added.
    pub fn add_pages(&mut self, recs: &[PageRecord<'_>]) -> Result<()> {
        let dim = self.manifest.provenance.dim;
        let pool = self.pool_factor;
        let mut batch: HashSet<([u8; 32], u32)> = HashSet::new();
        let mut files = Vec::with_capacity(recs.len());
        for rec in recs {
            files.push(self.check_page(rec, dim, &mut batch)?);
        }
        let prepared: Vec<PreparedVectors> = recs
            .par_iter()
            .map(|rec| {
                let pooled = (pool > 1 && rec.image_rows.len() > pool)
                    .then(|| pooling::pool_rows(rec.vectors, dim, rec.image_rows.clone(), pool));
                let (v, n, rows, members) = match &pooled {
                    Some(p) => (
                        &p.vectors[..],
                        p.n_tokens,
                        p.image_rows.clone(),
                        p.members.clone(),
                    ),
                    None => (
                        rec.vectors,
                        rec.n_tokens,
                        rec.image_rows.clone(),
                        Vec::new(),
                    ),
                };
                PreparedVectors {
                    packed: vectors::pack_blocks(v, n, dim),
                    codes: vectors::sign_codes(v, n, dim),
                    n_tokens: n as u32,
                    image_rows: rows.start as u32..rows.end as u32,
                    members,
                }
            })
            .collect();
        for ((rec, file), prep) in recs.iter().zip(files).zip(prepared) {
            let page_id = self.manifest.next_page_id;
            self.writable()?.add(&TextDoc {
                page_id,
                file_hash: &rec.file_hash,
                path: &file.path,
                title: file.title.as_deref(),
                page: rec.page,
                ingested_at: file.ingested_at,
                text: rec.text,
            })?;
            self.manifest.next_page_id += 1;
            if let Some(f) = self.manifest.file_mut(&rec.file_hash) {
                let at = f.pages.partition_point(|&p| p < rec.page);
                f.pages.insert(at, rec.page);
            }
            self.pending.push(PageData {
                page_id,
                file_hash: rec.file_hash,
                page_no: rec.page,
                n_tokens: prep.n_tokens,
                image_rows: prep.image_rows,
                grid: rec.merged_grid,
                packed: prep.packed,
                codes: prep.codes,
                meta: PageMeta {
                    text: rec.text.to_string(),
                    members: prep.members,
                },
            });
        }
        Ok(())
    }

    /// Refuses a page that does not fit its file (begun, page number in range, not yet added —
    /// in the index or earlier in `batch`) or whose vectors or image rows are malformed.
    fn check_page(
        &self,
        rec: &PageRecord<'_>,
        dim: usize,
        batch: &mut HashSet<([u8; 32], u32)>,
    ) -> Result<PageFile> {
        let file = self.manifest.file(&rec.file_hash).ok_or_else(|| {
            IndexError::Invalid(format!(
                "add_page for file {} before begin_file",
                hex(&rec.file_hash)
            ))
        })?;
        let bad =
            |what: String| IndexError::Invalid(format!("{} page {}: {what}", file.path, rec.page));
        if rec.page == 0 || rec.page > file.page_count {
            return Err(bad(format!("page number out of 1..={}", file.page_count)));
        }
        if file.pages.binary_search(&rec.page).is_ok() || !batch.insert((rec.file_hash, rec.page)) {
            return Err(bad("already in the index".into()));
        }
        if rec.n_tokens == 0 || rec.vectors.len() != rec.n_tokens * dim {
            return Err(bad(format!(
                "{} values for {} tokens of dim {dim}",
                rec.vectors.len(),
                rec.n_tokens
            )));
        }
        if rec.vectors.iter().any(|x| !x.is_finite()) {
            return Err(bad("vectors contain NaN or infinity".into()));
        }
        let (gh, gw) = rec.merged_grid;
        let n_img = rec.image_rows.len();
        if rec.image_rows.start > rec.image_rows.end
            || rec.image_rows.end > rec.n_tokens
            || (n_img > 0 && n_img != gh as usize * gw as usize)
        {
            return Err(bad(format!(
                "image rows {:?} do not fit {} tokens / a {gh}×{gw} grid",
                rec.image_rows, rec.n_tokens
            )));
        }
        // Only what the page needs: the entry's page list grows with the file (cloning it per
        // page made adding a 100k-page file quadratic).
        Ok(PageFile {
            path: file.path.clone(),
            title: file.title.clone(),
            ingested_at: file.ingested_at,
        })
    }

    /// Marks a file done (whatever pages it has; failed pages are the engine's to report).
    pub fn finish_file(&mut self, hash: &[u8; 32]) -> Result<()> {
        self.writable()?;
        let f = self.manifest.file_mut(hash).ok_or_else(|| {
            IndexError::Invalid(format!("finish_file for unknown file {}", hex(hash)))
        })?;
        f.complete = true;
        Ok(())
    }

    /// Removes a file's pages (tombstones; space comes back at `compact`).
    pub fn remove_file(&mut self, hash: &[u8; 32]) -> Result<()> {
        self.writable()?.delete_file(hash)?;
        let ids: Vec<u64> = self
            .committed
            .segments
            .iter()
            .flat_map(|s| {
                s.entries
                    .iter()
                    .filter(|e| &e.file_hash == hash)
                    .map(|e| e.page_id)
            })
            .collect();
        self.manifest.delete_pages(ids);
        self.pending.retain(|p| &p.file_hash != hash);
        let h = hex(hash);
        self.manifest.files.retain(|f| f.hash != h);
        Ok(())
    }

    /// Makes everything added so far durable and visible, atomically.
    pub fn commit(&mut self) -> Result<CommitInfo> {
        self.writable()?;
        let mut next = self.manifest.clone();
        let mut segments: Vec<Arc<SegmentReader>> = self.committed.segments.clone();
        let mut seg_name = None;
        let added = self.pending.len() as u64;
        next.generation += 1;
        hooks::commit_begin(next.generation, live_pages(&next));
        if !self.pending.is_empty() {
            let id = next.next_segment_id;
            next.next_segment_id += 1;
            let name = segment_file_name(id);
            let seg_dir = self.dir.join(SEGMENTS_DIR);
            let path = seg_dir.join(&name);
            let dim = next.provenance.dim;
            hooks::step("write segment");
            let bytes = write_segment(
                &path,
                dim,
                self.pending.len(),
                self.pending.iter().cloned().map(Ok),
            )?;
            hooks::step("fsync segments dir");
            format::fsync_dir(&seg_dir)?;
            next.segments.push(SegmentEntry {
                id,
                file: name.clone(),
                pages: added,
                bytes,
            });
            segments.push(Arc::new(SegmentReader::open(&path, dim, false)?));
            seg_name = Some(name);
        }
        let text_dir = self.dir.join(TEXT_DIR);
        let text = self
            .text
            .as_mut()
            .ok_or_else(|| IndexError::Invalid("read-only".into()))?;
        next.text = text_commit(text, next.generation, &text_dir, false)?;
        next.store(&self.dir)?;
        self.manifest = next;
        self.pending.clear();
        let snap = build_snapshot(
            &self.manifest,
            segments,
            self.text.as_ref().expect("writable"),
            &self.dir,
        )?;
        self.committed = Arc::new(snap);
        hooks::commit_end(self.manifest.generation, self.committed.pages.len() as u64);
        Ok(CommitInfo {
            generation: self.manifest.generation,
            pages_added: added,
            pages_total: self.committed.pages.len() as u64,
            segment: seg_name,
        })
    }

    /// Snapshot of the last commit.
    pub fn searcher(&self) -> Result<Searcher> {
        Ok(Searcher {
            snap: self.committed.clone(),
        })
    }

    /// Pages added through this handle and not yet committed.
    pub fn pending_pages(&self) -> usize {
        self.pending.len()
    }

    /// Rewrites all live pages into one segment, dropping tombstoned ones, and merges the text
    /// index. Commits first so nothing pending is lost.
    pub fn compact(&mut self) -> Result<CommitInfo> {
        self.commit()?;
        let mut next = self.manifest.clone();
        let old: Vec<SegmentEntry> = next.segments.clone();
        let id = next.next_segment_id;
        next.next_segment_id += 1;
        let name = segment_file_name(id);
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let path = seg_dir.join(&name);
        let dim = next.provenance.dim;
        let snap = self.committed.clone();
        let live = snap.pages.clone();
        let iter = live
            .iter()
            .map(|r| snap.segments[r.seg as usize].page_data(r.idx as usize));
        let bytes = write_segment(&path, dim, live.len(), iter)?;
        format::fsync_dir(&seg_dir)?;
        next.segments = vec![SegmentEntry {
            id,
            file: name.clone(),
            pages: live.len() as u64,
            bytes,
        }];
        next.deleted.clear();
        next.generation += 1;
        let text_dir = self.dir.join(TEXT_DIR);
        let text = self.writable()?;
        next.text = text_commit(text, next.generation, &text_dir, true)?;
        next.store(&self.dir)?;
        self.manifest = next;
        let reader = Arc::new(SegmentReader::open(&path, dim, false)?);
        let snap = build_snapshot(
            &self.manifest,
            vec![reader],
            self.text.as_ref().expect("writable"),
            &self.dir,
        )?;
        self.committed = Arc::new(snap);
        for s in old {
            let p = seg_dir.join(&s.file);
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
        format::fsync_dir(&seg_dir)?;
        Ok(CommitInfo {
            generation: self.manifest.generation,
            pages_added: 0,
            pages_total: self.committed.pages.len() as u64,
            segment: Some(name),
        })
    }
}

fn to_state(f: &FileEntry) -> FileState {
    let first_missing = (1..=f.page_count)
        .zip(f.pages.iter().copied().chain(std::iter::repeat(0)))
        .find(|(want, have)| want != have)
        .map(|(w, _)| w);
    FileState {
        path: PathBuf::from(&f.path),
        title: f.title.clone(),
        page_count: f.page_count,
        pages_committed: f.pages.len() as u32,
        first_missing_page: first_missing,
        complete: f.complete,
    }
}
