//! MaxSim as batched matmuls over page tiles resident on a candle device (CUDA in VRAM, or the
//! CPU): a `PageScorer` built once per snapshot.
//!
//! Pages are grouped by length rounded up to `LEN_MULTIPLE` tokens and packed per group into
//! tensors of at most `chunk_pages` pages, `[pages, len, dim]`. A page shorter than its group's
//! length is padded with copies of its first token: a duplicate never changes a max, so no mask
//! is needed. One query is then, per chunk, `[nq, dim] × [dim, pages·len]`, a max over each
//! page's `len` columns and a sum over the query tokens. Storage is f16 (as on disk); the matmul
//! runs in `compute` — f32 keeps it exact (the CPU default), f16 halves the memory traffic on a
//! GPU (cuBLAS accumulates in f32 but rounds each similarity to f16 before the max).
//!
//! On CUDA with f16 `maxsim_kernel`'s fused kernel (`TensorKernel::Fused`) runs instead, and is
//! the default wherever it applies: it reads the same resident chunks once per query through a
//! page table and writes one score per page, never materialising the similarity matrix (f32 max
//! and sum), so it reads fewer bytes than the matmul path; `set_kernel` switches back (`bench
//! search` runs both and compares their top-10s).
use super::format::{IndexError, Result};
pub use super::page_table::FusedLoads;
use super::page_table::TableEntry;
use super::search::{PageScorer, PageView, Searcher};
use super::vectors;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// Page lengths are rounded up to this many tokens to form groups: the fused kernel consumes
/// pages in steps of this many tokens.
pub const LEN_MULTIPLE: usize = super::page_table::TOKEN_MULTIPLE;

/// The tile length a page of `n_tokens` is padded to (its group).
fn group_len(n_tokens: usize) -> usize {
    n_tokens.div_ceil(LEN_MULTIPLE) * LEN_MULTIPLE
}

struct Chunk {
    /// `[pages, len, dim]` in the storage dtype.
    pages: Tensor,
    ids: Vec<u64>,
}

/// How a `TensorScorer` computes MaxSim over its resident chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKernel {
    /// Per chunk `[nq, dim] × [dim, pages·len]`, max over each page's columns, sum (candle ops;
    /// cuBLAS on CUDA).
    Matmul,
    /// One fused CUDA kernel over every page (f16 storage and compute on CUDA).
    Fused,
}

#[cfg(feature = "cuda")]
type FusedSlot = std::result::Result<super::maxsim_kernel::FusedMaxSim, String>;
/// Without CUDA the fused kernel never exists; the slot only carries why.
#[cfg(not(feature = "cuda"))]
type FusedSlot = std::result::Result<std::convert::Infallible, String>;

pub struct TensorScorer {
    device: Device,
    compute: DType,
    dim: usize,
    chunks: Vec<Chunk>,
    /// page id → (chunk, row in it).
    rows: HashMap<u64, (usize, usize)>,
    resident_bytes: u64,
    /// Page ids in the order the scorer was built with: a query over exactly these pages (the
    /// common full scan) uses the fused kernel's prebuilt table.
    order: Vec<u64>,
    /// The snapshot (`Searcher::instance`) whose pages `order` lists, when built by `new`.
    built_for: Option<u64>,
    /// Holds raw device addresses into `chunks`, which live (unchanged) as long as it does.
    fused: FusedSlot,
    kernel: TensorKernel,
}

fn tensor_err(what: &str) -> impl FnOnce(candle_core::Error) -> IndexError + '_ {
    move |e| IndexError::Invalid(format!("tensor scorer: {what}: {e}"))
}

impl TensorScorer {
    /// Uploads every page of the snapshot to `device`, `chunk_pages` pages per tensor.
    pub fn new(
        searcher: &Searcher,
        device: &Device,
        compute: DType,
        chunk_pages: usize,
    ) -> Result<Self> {
        let dim = searcher.provenance().dim;
        let mut scorer =
            Self::from_views(&searcher.page_views(), dim, device, compute, chunk_pages)?;
        scorer.built_for = Some(searcher.instance());
        Ok(scorer)
    }

    /// Device bytes `new` would hold for `searcher`'s pages (tiles padded to whole groups).
    pub fn resident_bytes_for(searcher: &Searcher) -> u64 {
        Self::page_bytes_for(searcher).into_iter().sum()
    }

    /// Device bytes of each of `searcher`'s pages, in its order (what a split by capacity
    /// weighs; an empty page holds none).
    pub fn page_bytes_for(searcher: &Searcher) -> Vec<u64> {
        let dim = searcher.provenance().dim;
        (0..searcher.num_pages())
            .map(|i| Self::page_bytes(searcher.page_view(i).n_tokens, dim))
            .collect()
    }

    /// Device bytes of one page of `n_tokens` `dim`-d vectors, padded to its group.
    pub fn page_bytes(n_tokens: usize, dim: usize) -> u64 {
        (group_len(n_tokens) * dim * 2) as u64
    }

    pub fn from_views(
        views: &[PageView<'_>],
        dim: usize,
        device: &Device,
        compute: DType,
        chunk_pages: usize,
    ) -> Result<Self> {
        let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, v) in views.iter().enumerate() {
            if v.n_tokens > 0 {
                groups.entry(group_len(v.n_tokens)).or_default().push(i);
            }
        }
        let mut lens: Vec<usize> = groups.keys().copied().collect();
        lens.sort_unstable();
        let mut chunks = Vec::new();
        let mut rows = HashMap::new();
        let mut resident_bytes = 0u64;
        for len in lens {
            for members in groups[&len].chunks(chunk_pages.max(1)) {
                // Row-major f16 tokens of each page, padded with its first token (all cores,
                // straight into the chunk's host buffer).
                let mut host = vec![0u16; members.len() * len * dim];
                host.par_chunks_mut(len * dim)
                    .zip(members.par_iter())
                    .for_each(|(page, &i)| {
                        let v = &views[i];
                        let (tokens, pad) = page.split_at_mut(v.n_tokens * dim);
                        vectors::unpack_rows_bits(v.packed, dim, v.n_tokens, tokens);
                        for row in pad.chunks_exact_mut(dim) {
                            row.copy_from_slice(&tokens[..dim]);
                        }
                    });
                let host: Vec<half::f16> = bytemuck::cast_vec(host);
                let mut ids = Vec::with_capacity(members.len());
                for &i in members {
                    rows.insert(views[i].page_id, (chunks.len(), ids.len()));
                    ids.push(views[i].page_id);
                }
                let pages = Tensor::from_vec(host, (members.len(), len, dim), &Device::Cpu)
                    .and_then(|t| t.to_device(device))
                    .map_err(tensor_err("uploading page tiles"))?;
                resident_bytes += (members.len() * len * dim * 2) as u64;
                chunks.push(Chunk { pages, ids });
            }
        }
        let order: Vec<u64> = views.iter().map(|v| v.page_id).collect();
        let full: Vec<TableEntry> = views
            .iter()
            .enumerate()
            .filter_map(|(out, v)| {
                let &(chunk, row) = rows.get(&v.page_id)?;
                Some(TableEntry { chunk, row, out })
            })
            .collect();
        let fused = build_fused(device, compute, dim, &chunks, &full);
        let kernel = if fused.is_ok() {
            TensorKernel::Fused
        } else {
            TensorKernel::Matmul
        };
        Ok(TensorScorer {
            device: device.clone(),
            compute,
            dim,
            chunks,
            rows,
            resident_bytes,
            order,
            built_for: None,
            fused,
            kernel,
        })
    }

    /// The kernel `score_all` runs (the fused one where it is available, unless `set_kernel` chose).
    pub fn kernel(&self) -> TensorKernel {
        self.kernel
    }

    /// Why the fused kernel is not available here, if it is not.
    pub fn fused_unavailable(&self) -> Option<&str> {
        self.fused.as_ref().err().map(String::as_str)
    }

    /// Switches kernels over the same resident tiles (benchmarks compare both).
    pub fn set_kernel(&mut self, kernel: TensorKernel) -> Result<()> {
        if let (TensorKernel::Fused, Err(why)) = (kernel, &self.fused) {
            return Err(IndexError::Invalid(format!(
                "the fused MaxSim kernel is not available: {why}"
            )));
        }
        self.kernel = kernel;
        Ok(())
    }

    /// How the fused kernel loads page tokens, where it is available (None elsewhere).
    pub fn fused_loads(&self) -> Option<FusedLoads> {
        #[cfg(feature = "cuda")]
        {
            self.fused.as_ref().ok().map(|f| f.loads())
        }
        #[cfg(not(feature = "cuda"))]
        {
            None
        }
    }

    /// Switches the fused kernel's loads (benchmarks compare both; the scores are equal).
    pub fn set_fused_loads(&mut self, loads: FusedLoads) {
        #[cfg(feature = "cuda")]
        if let Ok(f) = &mut self.fused {
            f.set_loads(loads);
        }
        #[cfg(not(feature = "cuda"))]
        let _ = loads;
    }

    /// Bytes of page tiles held on the device (padding included).
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }

    pub fn resident_pages(&self) -> usize {
        self.rows.len()
    }

    /// Where page `v` is resident: None for an empty page (it scores 0, as on the CPU).
    fn locate(&self, v: &PageView<'_>) -> Result<Option<(usize, usize)>> {
        if v.n_tokens == 0 {
            return Ok(None);
        }
        self.rows.get(&v.page_id).copied().map(Some).ok_or_else(|| {
            IndexError::Invalid(format!(
                "page {} is not resident in the tensor scorer; build it again for this snapshot",
                v.page_id
            ))
        })
    }

    /// The fused kernel: the prebuilt table when `pages` is the build order, else a table of
    /// just `pages` (a prefilter's candidates).
    fn score_fused(&self, q: &[f32], nq: usize, pages: &[PageView<'_>]) -> Result<Vec<f32>> {
        let fused = match &self.fused {
            Ok(f) => f,
            Err(why) => {
                return Err(IndexError::Invalid(format!(
                    "the fused MaxSim kernel is not available: {why}"
                )))
            }
        };
        let full = pages.len() == self.order.len()
            && pages
                .iter()
                .zip(&self.order)
                .all(|(v, &id)| v.page_id == id);
        #[cfg(feature = "cuda")]
        {
            if full {
                return fused.score_full(q, nq, pages.len());
            }
            let mut entries = Vec::new();
            for (out, v) in pages.iter().enumerate() {
                if let Some((chunk, row)) = self.locate(v)? {
                    entries.push(TableEntry { chunk, row, out });
                }
            }
            fused.score_entries(&entries, q, nq, pages.len())
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (full, q, nq);
            match *fused {}
        }
    }

    /// Milliseconds the fused kernel alone takes for one query over every resident page (CUDA
    /// events), or None where the fused kernel is not available.
    pub fn fused_kernel_ms(&self, q: &[f32], nq: usize) -> Option<Result<f64>> {
        #[cfg(feature = "cuda")]
        {
            let f = self.fused.as_ref().ok()?;
            Some(f.time_full_kernel(q, nq, self.order.len()))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (q, nq);
            None
        }
    }

    /// A sharded scorer calls from a thread of its own: the driver calls that follow act on the
    /// thread's current context, which must be this device's.
    fn bind_device(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(d) = &self.device {
            d.cuda_stream().context().bind_to_thread().map_err(|e| {
                IndexError::Invalid(format!("tensor scorer: binding the device: {e}"))
            })?;
        }
        Ok(())
    }

    /// MaxSim of `q` (`[nq, dim]`, compute dtype) against `pages` (`[p, len, dim]`): `[p]` f32.
    /// The similarities come out as `[nq, p·len]` so the max runs over contiguous rows.
    fn chunk_scores(&self, pages: &Tensor, q: &Tensor) -> candle_core::Result<Tensor> {
        let (p, len, dim) = pages.dims3()?;
        let nq = q.dim(0)?;
        let flat = pages.reshape((p * len, dim))?.to_dtype(self.compute)?;
        q.matmul(&flat.t()?)?
            .reshape((nq, p, len))?
            .max(2)?
            .to_dtype(DType::F32)?
            .sum(0)
    }
}

impl PageScorer for TensorScorer {
    fn name(&self) -> String {
        let dev = match &self.device {
            Device::Cpu => "cpu".to_string(),
            d => format!("{d:?}").to_lowercase(),
        };
        let kernel = match (self.kernel, self.fused_loads()) {
            (TensorKernel::Matmul, _) => "matmul",
            (TensorKernel::Fused, Some(FusedLoads::Registers)) => "fused-registers",
            (TensorKernel::Fused, _) => "fused-ring",
        };
        format!("tensor-{}-{:?}-{kernel}", dev, self.compute).to_lowercase()
    }

    /// Built for this very snapshot, the fused kernel scores it through its prebuilt table
    /// without the pages being listed or matched again.
    fn top_k_snapshot(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        searcher: &Searcher,
        k: usize,
    ) -> Result<Vec<(u64, f32)>> {
        #[cfg(feature = "cuda")]
        if let (Some(built), Ok(fused), TensorKernel::Fused) =
            (self.built_for, &self.fused, self.kernel)
        {
            if built == searcher.instance() && dim == self.dim && q.len() >= nq * dim {
                self.bind_device()?;
                let scores = fused.score_full(q, nq, self.order.len())?;
                return Ok(super::search::top_k_scores(&scores, &self.order, k));
            }
        }
        self.top_k(q, nq, dim, &searcher.page_views(), k)
    }

    fn score_all(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        pages: &[PageView<'_>],
    ) -> Result<Vec<f32>> {
        if dim != self.dim || q.len() < nq * dim {
            return Err(IndexError::Invalid(format!(
                "tensor scorer holds {}-d pages; the query has {} values for {nq} tokens of {dim}",
                self.dim,
                q.len()
            )));
        }
        self.bind_device()?;
        if self.kernel == TensorKernel::Fused {
            return self.score_fused(q, nq, pages);
        }
        let qt = Tensor::from_slice(&q[..nq * dim], (nq, dim), &self.device)
            .and_then(|t| t.to_dtype(self.compute))
            .map_err(tensor_err("uploading the query"))?;
        // Which rows of which chunk each requested page is.
        let mut wanted: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.chunks.len()];
        for (out, v) in pages.iter().enumerate() {
            if let Some((c, r)) = self.locate(v)? {
                wanted[c].push((r, out));
            }
        }
        // Every chunk's scores stay on the device until one copy back (one synchronisation).
        let mut parts = Vec::new();
        let mut order = Vec::new();
        for (chunk, want) in self.chunks.iter().zip(&wanted) {
            if want.is_empty() {
                continue;
            }
            let part = if want.len() == chunk.ids.len() {
                let s = self
                    .chunk_scores(&chunk.pages, &qt)
                    .map_err(tensor_err("scoring"))?;
                // Rows in page order; `want` may list them in another.
                let pick: Vec<u32> = want.iter().map(|&(r, _)| r as u32).collect();
                if pick.iter().enumerate().all(|(i, &r)| i as u32 == r) {
                    s
                } else {
                    Tensor::new(pick.as_slice(), &self.device)
                        .and_then(|idx| s.index_select(&idx, 0))
                        .map_err(tensor_err("reordering scores"))?
                }
            } else {
                // A subset (a prefilter's candidates): gather just those pages.
                let idx: Vec<u32> = want.iter().map(|&(r, _)| r as u32).collect();
                let idx = Tensor::new(idx.as_slice(), &self.device)
                    .map_err(tensor_err("candidate index"))?;
                chunk
                    .pages
                    .index_select(&idx, 0)
                    .and_then(|sub| self.chunk_scores(&sub, &qt))
                    .map_err(tensor_err("scoring candidates"))?
            };
            parts.push(part);
            order.extend(want.iter().map(|&(_, out)| out));
        }
        let mut scores = vec![0f32; pages.len()];
        if parts.is_empty() {
            return Ok(scores);
        }
        let all = Tensor::cat(&parts, 0)
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(tensor_err("copying scores back"))?;
        for (out, s) in order.into_iter().zip(all) {
            scores[out] = s;
        }
        Ok(scores)
    }
}

/// The fused kernel over `chunks` where it applies: CUDA, f16 compute, a supported dim.
fn build_fused(
    device: &Device,
    compute: DType,
    dim: usize,
    chunks: &[Chunk],
    full: &[TableEntry],
) -> FusedSlot {
    if !device.is_cuda() {
        return Err("it runs on CUDA devices only".into());
    }
    if compute != DType::F16 {
        return Err(format!(
            "it computes in f16 (this scorer computes in {compute:?})"
        ));
    }
    if !super::page_table::kernel_supports(dim) {
        return Err(format!(
            "{dim}-d vectors (it needs a multiple of 32, at most 128)"
        ));
    }
    #[cfg(feature = "cuda")]
    {
        let tensors: Vec<&Tensor> = chunks.iter().map(|c| &c.pages).collect();
        super::maxsim_kernel::FusedMaxSim::new(device, &tensors, dim, full)
            .map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (chunks, full);
        Err("this build has no CUDA support".into())
    }
}
