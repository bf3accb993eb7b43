//! Searching one committed snapshot: exact or compressed MaxSim over every live page (all cores,
//! bounded top-k), BM25 over text, RRF fusion, and heatmaps for result pages.

use super::binary;
use super::format::{IndexError, Result};
use super::fusion;
use super::manifest::FileEntry;
use super::maxsim::{self, Isa};
use super::provenance::Provenance;
use super::segment::SegmentReader;
use super::snippet::{page_snippet, Snippet, SNIPPET_CHARS};
use super::text::TextView;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    Visual,
    Text,
    Hybrid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// f32 MaxSim over the stored f16 vectors.
    Exact,
    /// Hamming MaxSim over sign codes for every page, exact rerank of the best `candidates`.
    Binary { candidates: usize },
}

impl Scorer {
    /// The binary prefilter for a corpus of `pages`: 400 candidates, or 1 % of the pages when
    /// that is more: a fixed count loses recall as the corpus grows (`docs/benchmarks.md`).
    pub fn binary_for_pages(pages: usize) -> Self {
        Scorer::Binary {
            candidates: (pages / 100).max(400),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Query {
    /// `n_tokens × dim` row-major query vectors (may be empty for text mode).
    pub vectors: Vec<f32>,
    pub n_tokens: usize,
    pub text: String,
    pub mode: SearchMode,
    pub top_k: usize,
    /// Weight of the visual ranking in hybrid RRF, in [0, 1].
    pub visual_weight: f32,
    pub scorer: Scorer,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hit {
    pub page_id: u64,
    /// MaxSim (visual), BM25 (text) or the RRF score (hybrid).
    pub score: f32,
    pub file_path: PathBuf,
    pub file_hash: [u8; 32],
    /// 1-based.
    pub page: u32,
    pub title: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PageHeatmap {
    pub grid_h: u32,
    pub grid_w: u32,
    /// Per merged patch (row-major), the max similarity over query tokens.
    pub values: Vec<f32>,
    /// Per query token, per merged patch.
    pub per_query_token: Vec<Vec<f32>>,
}

/// One page's stored vectors, as a scorer sees them.
#[derive(Clone, Copy)]
pub struct PageView<'a> {
    pub page_id: u64,
    pub packed: &'a [u16],
    pub n_tokens: usize,
}

/// Seam for other scorers (a CUDA scorer keeping page tiles resident in VRAM, one sharded over
/// several devices): scores every page of a snapshot for one query. The CPU implementation is
/// `CpuExact`.
pub trait PageScorer: Send + Sync {
    fn name(&self) -> String;
    fn score_all(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        pages: &[PageView<'_>],
    ) -> Result<Vec<f32>>;

    /// The best `k` of `pages`: (page id, MaxSim), best first, ties to the smaller id. By
    /// default every page's score, then the top k; a sharded scorer merges its shards' own.
    fn top_k(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        pages: &[PageView<'_>],
        k: usize,
    ) -> Result<Vec<(u64, f32)>> {
        let scores = self.score_all(q, nq, dim, pages)?;
        let ids: Vec<u64> = pages.iter().map(|v| v.page_id).collect();
        Ok(top_k_scores(&scores, &ids, k))
    }

    /// The best `k` of every page of `searcher`'s snapshot: by default its pages listed, then
    /// `top_k`. A scorer built for exactly that snapshot skips the listing (next to a GPU
    /// scorer it is a real share of the query).
    fn top_k_snapshot(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        searcher: &Searcher,
        k: usize,
    ) -> Result<Vec<(u64, f32)>> {
        self.top_k(q, nq, dim, &searcher.page_views(), k)
    }
}

pub struct CpuExact(pub Isa);

impl PageScorer for CpuExact {
    fn name(&self) -> String {
        format!("cpu-exact-{}", self.0.name())
    }
    fn score_all(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        pages: &[PageView<'_>],
    ) -> Result<Vec<f32>> {
        let prepared = maxsim::PreparedQuery::new(self.0, q, nq, dim);
        // Each thread takes contiguous runs of pages, so page i + 1 is mostly the one it scores
        // next: the kernel prefetches into it while finishing page i.
        Ok((0..pages.len())
            .into_par_iter()
            .map_init(maxsim::Scratch::default, |scratch, i| {
                let p = &pages[i];
                let next = pages.get(i + 1).map(|n| n.packed);
                prepared.score_then(scratch, p.packed, p.n_tokens, next)
            })
            .collect())
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct PageRef {
    pub seg: u32,
    pub idx: u32,
}

/// Everything one commit made visible; immutable and shared.
pub(crate) struct Snapshot {
    pub provenance: Provenance,
    pub generation: u64,
    /// Unique to this snapshot in this process (`next_instance`): a scorer built for it knows
    /// its page list without listing it again.
    pub instance: u64,
    pub segments: Vec<Arc<SegmentReader>>,
    pub pages: Vec<PageRef>,
    pub by_id: HashMap<u64, usize>,
    pub files: HashMap<[u8; 32], FileEntry>,
    pub text: TextView,
}

/// A number no other snapshot of this process has.
pub(crate) fn next_instance() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A cheap, Send + Sync handle on the last commit; unaffected by later ingest.
#[derive(Clone)]
pub struct Searcher {
    pub(crate) snap: Arc<Snapshot>,
}

/// The order of a ranking: the higher score first, ties to the smaller page id (stable results,
/// the same on one device or merged from several).
pub(crate) fn rank_order(a: &(u64, f32), b: &(u64, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Keeps the best `k` (score, id) pairs; ties broken by the smaller id so results are stable.
pub(crate) fn top_k(scored: impl ParallelIterator<Item = (f32, u64)>, k: usize) -> Vec<(u64, f32)> {
    type Heap = BinaryHeap<Reverse<(OrdF32, Reverse<u64>)>>;
    let push = |mut h: Heap, (s, id): (f32, u64)| {
        let item = Reverse((OrdF32(s), Reverse(id)));
        // Once full, most pages lose to the k-th best: one comparison, no heap traffic.
        if h.len() < k {
            h.push(item);
        } else if h.peek().is_some_and(|worst| item < *worst) {
            h.pop();
            h.push(item);
        }
        h
    };
    let heap = scored.fold(Heap::new, push).reduce(Heap::new, |a, b| {
        b.into_iter()
            .map(|Reverse((s, Reverse(id)))| (s.0, id))
            .fold(a, push)
    });
    let mut out: Vec<(u64, f32)> = heap
        .into_iter()
        .map(|Reverse((s, Reverse(id)))| (id, s.0))
        .collect();
    out.sort_by(rank_order);
    out
}

/// As `top_k`, over scores in a slice (page `i` is `ids[i]`): each thread keeps a chunk's best
/// in a sorted run and skips, with one comparison, every score below that run's last, so the
/// common case costs no heap work and no per-item closure of a parallel iterator. A sorted run
/// costs O(k) per insertion: past `SORTED_RUN_MAX` the heaps of `top_k` do better.
pub(crate) fn top_k_scores(scores: &[f32], ids: &[u64], k: usize) -> Vec<(u64, f32)> {
    const CHUNK: usize = 16 * 1024;
    const SORTED_RUN_MAX: usize = 256;
    if k > SORTED_RUN_MAX {
        return top_k(scores.par_iter().copied().zip(ids.par_iter().copied()), k);
    }
    if k == 0 {
        return Vec::new();
    }
    let best_of = |start: usize, chunk: &[f32]| {
        let mut kept: Vec<(u64, f32)> = Vec::with_capacity(k + 1);
        for (j, &s) in chunk.iter().enumerate() {
            if kept.len() == k && s.total_cmp(&kept[k - 1].1).is_lt() {
                continue;
            }
            let item = (ids[start + j], s);
            let at = kept.partition_point(|x| rank_order(x, &item).is_lt());
            if at < k {
                kept.insert(at, item);
                kept.truncate(k);
            }
        }
        kept
    };
    scores
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| best_of(c * CHUNK, chunk))
        .reduce(Vec::new, |mut a, b| {
            a.extend(b);
            a.sort_by(rank_order);
            a.truncate(k);
            a
        })
}

#[derive(Clone, Copy, PartialEq)]
struct OrdF32(f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

impl Searcher {
    pub fn provenance(&self) -> &Provenance {
        &self.snap.provenance
    }

    /// The same snapshot with every segment copied into huge-page memory
    /// (`SegmentReader::resident_copy`); the text side is shared.
    pub fn resident(&self) -> Result<Searcher> {
        let s = &self.snap;
        let segments = s
            .segments
            .iter()
            .map(|seg| seg.resident_copy().map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Searcher {
            snap: Arc::new(Snapshot {
                provenance: s.provenance.clone(),
                generation: s.generation,
                instance: next_instance(),
                segments,
                pages: s.pages.clone(),
                by_id: s.by_id.clone(),
                files: s.files.clone(),
                text: s.text.clone(),
            }),
        })
    }

    /// Which snapshot this is: equal only for clones of the same searcher (or the same open).
    pub fn instance(&self) -> u64 {
        self.snap.instance
    }

    /// Every page of the snapshot as a scorer sees it, in snapshot order (all cores: the
    /// listing grows with the corpus).
    pub fn page_views(&self) -> Vec<PageView<'_>> {
        (0..self.snap.pages.len())
            .into_par_iter()
            .map(|i| self.page_view(i))
            .collect()
    }

    /// Generation of the commit this searcher sees.
    pub fn generation(&self) -> u64 {
        self.snap.generation
    }

    pub fn num_pages(&self) -> usize {
        self.snap.pages.len()
    }

    /// (page id, file hash, page number) of every live page, in storage order.
    pub fn live_pages(&self) -> Vec<(u64, [u8; 32], u32)> {
        self.snap
            .pages
            .iter()
            .map(|r| {
                let e = &self.snap.segments[r.seg as usize].entries[r.idx as usize];
                (e.page_id, e.file_hash, e.page_no)
            })
            .collect()
    }

    /// The stored f16 vector bits of a live page (block-packed, as searched).
    pub fn page_vector_bits(&self, page_id: u64) -> Option<&[u16]> {
        let &i = self.snap.by_id.get(&page_id)?;
        let r = self.snap.pages[i];
        Some(self.snap.segments[r.seg as usize].packed(r.idx as usize))
    }

    /// Page ids the text (tantivy) side of this snapshot holds, pages tombstoned since included.
    pub fn text_page_ids(&self) -> Result<Vec<u64>> {
        self.snap.text.all_page_ids()
    }

    /// The `i`-th live page of this snapshot (`i < num_pages()`).
    pub fn page_view(&self, i: usize) -> PageView<'_> {
        let r = self.snap.pages[i];
        let seg = &self.snap.segments[r.seg as usize];
        let e = &seg.entries[r.idx as usize];
        PageView {
            page_id: e.page_id,
            packed: seg.packed(r.idx as usize),
            n_tokens: e.n_tokens as usize,
        }
    }

    fn check_query(&self, q: &Query) -> Result<usize> {
        let dim = self.snap.provenance.dim;
        if q.mode != SearchMode::Text && (q.n_tokens == 0 || q.vectors.len() != q.n_tokens * dim) {
            return Err(IndexError::Invalid(format!(
                "query has {} values for {} tokens; this index needs {}-d vectors",
                q.vectors.len(),
                q.n_tokens,
                dim
            )));
        }
        if q.vectors.iter().any(|x| !x.is_finite()) {
            return Err(IndexError::Invalid(
                "query vectors contain NaN or infinity".into(),
            ));
        }
        Ok(dim)
    }

    /// Visual ranking: (page id, MaxSim), best first, at most `k`.
    pub fn visual(&self, q: &Query, k: usize) -> Result<Vec<(u64, f32)>> {
        self.visual_with(q, k, &CpuExact(maxsim::detected_isa()))
    }

    /// Visual ranking with an explicit exact scorer (benchmarks, a GPU scorer).
    pub fn visual_with(
        &self,
        q: &Query,
        k: usize,
        exact: &dyn PageScorer,
    ) -> Result<Vec<(u64, f32)>> {
        let dim = self.check_query(q)?;
        let n = self.snap.pages.len();
        match q.scorer {
            Scorer::Exact => exact.top_k_snapshot(&q.vectors, q.n_tokens, dim, self, k),
            Scorer::Binary { candidates } => {
                let qw = binary::query_words(&q.vectors, q.n_tokens, dim);
                let codes = |i: usize| {
                    let r = self.snap.pages[i];
                    let seg = &self.snap.segments[r.seg as usize];
                    (
                        seg.codes(r.idx as usize),
                        seg.entries[r.idx as usize].n_tokens,
                    )
                };
                let coarse = top_k(
                    (0..n).into_par_iter().map(|i| {
                        let (page, n_tokens) = codes(i);
                        // A thread scores a run of consecutive pages: i + 1 is most often next.
                        let next = (i + 1 < n).then(|| codes(i + 1).0);
                        let page = binary::PageCodes {
                            codes: page,
                            n_tokens: n_tokens as usize,
                            next,
                        };
                        let s = binary::hamming_maxsim(&qw, q.n_tokens, dim, page);
                        (s, i as u64)
                    }),
                    candidates.max(k),
                );
                let views: Vec<PageView<'_>> = coarse
                    .iter()
                    .map(|&(i, _)| self.page_view(i as usize))
                    .collect();
                exact.top_k(&q.vectors, q.n_tokens, dim, &views, k)
            }
        }
    }

    /// BM25 ranking over the live pages of this snapshot.
    pub fn text(&self, query: &str, k: usize) -> Result<Vec<(u64, f32)>> {
        // Over-fetch: the text index may still hold pages this snapshot has tombstoned.
        let mut hits = self.snap.text.search(query, k + 64)?;
        hits.retain(|(id, _)| self.snap.by_id.contains_key(id));
        hits.truncate(k);
        Ok(hits)
    }

    pub fn search(&self, q: &Query) -> Result<Vec<Hit>> {
        self.search_with(q, &CpuExact(maxsim::detected_isa()))
    }

    /// As `search`, with `exact` computing MaxSim (e.g. a `TensorScorer` resident in VRAM).
    pub fn search_with(&self, q: &Query, exact: &dyn PageScorer) -> Result<Vec<Hit>> {
        let k = q.top_k.max(1);
        let ranked = match q.mode {
            SearchMode::Visual => self.visual_with(q, k, exact)?,
            SearchMode::Text => self.text(&q.text, k)?,
            SearchMode::Hybrid => {
                let depth = k.max(100);
                let v: Vec<u64> = self
                    .visual_with(q, depth, exact)?
                    .into_iter()
                    .map(|x| x.0)
                    .collect();
                let t: Vec<u64> = self
                    .text(&q.text, depth)?
                    .into_iter()
                    .map(|x| x.0)
                    .collect();
                let mut f = fusion::rrf(&v, &t, q.visual_weight);
                f.truncate(k);
                f
            }
        };
        ranked
            .into_iter()
            .map(|(id, score)| self.hit(id, score))
            .collect()
    }

    fn entry(&self, page_id: u64) -> Result<(&SegmentReader, usize)> {
        let i = *self.snap.by_id.get(&page_id).ok_or_else(|| {
            IndexError::Invalid(format!("page id {page_id} is not in this index snapshot"))
        })?;
        let r = self.snap.pages[i];
        Ok((&self.snap.segments[r.seg as usize], r.idx as usize))
    }

    /// Page `page_id` of this snapshot as a hit with `score` (its file, page number and title).
    pub fn hit(&self, page_id: u64, score: f32) -> Result<Hit> {
        let (seg, i) = self.entry(page_id)?;
        let e = &seg.entries[i];
        let file = self.snap.files.get(&e.file_hash);
        Ok(Hit {
            page_id,
            score,
            file_path: file.map(|f| PathBuf::from(&f.path)).unwrap_or_default(),
            file_hash: e.file_hash,
            page: e.page_no,
            title: file.and_then(|f| f.title.clone()),
        })
    }

    /// The stored text of a page.
    pub fn page_text(&self, page_id: u64) -> Result<String> {
        let (seg, i) = self.entry(page_id)?;
        Ok(seg.meta(i)?.text)
    }

    /// Each page's text snippet for `query` (see `snippet`): around the terms BM25 matches, else
    /// the page's beginning; None for a page without text.
    pub fn snippets(&self, page_ids: &[u64], query: &str) -> Result<Vec<Option<Snippet>>> {
        let generator = self.snap.text.snippet_generator(query, SNIPPET_CHARS)?;
        page_ids
            .iter()
            .map(|&id| Ok(page_snippet(Some(&generator), &self.page_text(id)?)))
            .collect()
    }

    /// Recomputes the checksum of each page (by id): a search checks the pages it returns, so a
    /// page damaged after its segment was checked is refused rather than shown.
    pub fn verify_pages(&self, page_ids: impl IntoIterator<Item = u64>) -> Result<()> {
        // All cores: a result page is a few hundred KiB, and this is on every search's path.
        let ids: Vec<u64> = page_ids.into_iter().collect();
        ids.into_par_iter().try_for_each(|id| {
            let (seg, i) = self.entry(id)?;
            seg.verify_page(i)
        })
    }

    /// Per merged patch, the similarity of the vector that covers it (max over query tokens,
    /// and per query token). Pooled vectors map back through their patch members.
    pub fn heatmap(&self, page_id: u64, q: &[f32], nq: usize) -> Result<PageHeatmap> {
        let dim = self.snap.provenance.dim;
        if nq == 0 || q.len() != nq * dim {
            return Err(IndexError::Invalid(format!(
                "heatmap query needs {nq}×{dim} values, got {}",
                q.len()
            )));
        }
        let (seg, i) = self.entry(page_id)?;
        let e = &seg.entries[i];
        let meta = seg.meta(i)?;
        let (gh, gw) = e.grid;
        let n_patches = gh as usize * gw as usize;
        let sims = maxsim::token_sims(q, nq, dim, seg.packed(i), e.n_tokens as usize);
        let rows = e.image_rows.start as usize..e.image_rows.end as usize;
        let mut per_q = vec![vec![f32::NAN; n_patches]; nq];
        for (v, row) in rows.enumerate() {
            let patches: Vec<u32> = if meta.members.is_empty() {
                vec![v as u32]
            } else {
                meta.members.get(v).cloned().unwrap_or_default()
            };
            for p in patches.into_iter().filter(|&p| (p as usize) < n_patches) {
                for (qi, out) in per_q.iter_mut().enumerate() {
                    out[p as usize] = sims[qi * e.n_tokens as usize + row];
                }
            }
        }
        let values = (0..n_patches)
            .map(|p| per_q.iter().map(|r| r[p]).fold(f32::NEG_INFINITY, f32::max))
            .collect();
        Ok(PageHeatmap {
            grid_h: gh,
            grid_w: gw,
            values,
            per_query_token: per_q,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_candidates_grow_with_the_corpus() {
        let c = |pages| match Scorer::binary_for_pages(pages) {
            Scorer::Binary { candidates } => candidates,
            Scorer::Exact => unreachable!(),
        };
        assert_eq!(c(0), 400);
        assert_eq!(c(10_000), 400);
        assert_eq!(c(100_000), 1000);
        assert_eq!(c(1_000_000), 10_000);
    }

    #[test]
    fn top_k_equals_a_full_sort_ties_to_the_smaller_id() {
        // Scores from a small set so that many tie; ids shuffled by a multiplicative hash.
        let scored: Vec<(f32, u64)> = (0..40_000u64)
            .map(|i| {
                (
                    ((i * 7919) % 13) as f32 * 0.25,
                    (i * 2654435761) % 1_000_003,
                )
            })
            .collect();
        for k in [0, 1, 10, 100, 300, 50_000] {
            let mut want: Vec<(u64, f32)> = scored.iter().map(|&(s, id)| (id, s)).collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            want.truncate(k);
            assert_eq!(top_k(scored.clone().into_par_iter(), k), want, "k = {k}");
            let (scores, ids): (Vec<f32>, Vec<u64>) = scored.iter().copied().unzip();
            assert_eq!(top_k_scores(&scores, &ids, k), want, "k = {k}");
        }
    }
}
