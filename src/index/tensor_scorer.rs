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

use super::format::{IndexError, Result};
use super::search::{PageScorer, PageView, Searcher};
use super::vectors;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// Page lengths are rounded up to this many tokens to form groups.
pub const LEN_MULTIPLE: usize = 32;

struct Chunk {
    /// `[pages, len, dim]` in the storage dtype.
    pages: Tensor,
    ids: Vec<u64>,
}

pub struct TensorScorer {
    device: Device,
    compute: DType,
    dim: usize,
    chunks: Vec<Chunk>,
    /// page id → (chunk, row in it).
    rows: HashMap<u64, (usize, usize)>,
    resident_bytes: u64,
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
        let views: Vec<PageView<'_>> = (0..searcher.num_pages())
            .map(|i| searcher.page_view(i))
            .collect();
        Self::from_views(&views, dim, device, compute, chunk_pages)
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
                groups
                    .entry(v.n_tokens.div_ceil(LEN_MULTIPLE) * LEN_MULTIPLE)
                    .or_default()
                    .push(i);
            }
        }
        let mut lens: Vec<usize> = groups.keys().copied().collect();
        lens.sort_unstable();
        let mut chunks = Vec::new();
        let mut rows = HashMap::new();
        let mut resident_bytes = 0u64;
        for len in lens {
            for members in groups[&len].chunks(chunk_pages.max(1)) {
                // Row-major f16 tokens of each page, padded with its first token (all cores).
                let per_page: Vec<Vec<half::f16>> = members
                    .par_iter()
                    .map(|&i| {
                        let v = &views[i];
                        let tokens = vectors::unpack_all(v.packed, dim, v.n_tokens);
                        let first = &tokens[..dim];
                        tokens
                            .iter()
                            .chain((v.n_tokens..len).flat_map(|_| first))
                            .map(|&x| half::f16::from_f32(x))
                            .collect()
                    })
                    .collect();
                let host: Vec<half::f16> = per_page.concat();
                drop(per_page);
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
        Ok(TensorScorer {
            device: device.clone(),
            compute,
            dim,
            chunks,
            rows,
            resident_bytes,
        })
    }

    /// Bytes of page tiles held on the device (padding included).
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }

    pub fn resident_pages(&self) -> usize {
        self.rows.len()
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
        format!("tensor-{}-{:?}", dev, self.compute).to_lowercase()
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
        let qt = Tensor::from_slice(&q[..nq * dim], (nq, dim), &self.device)
            .and_then(|t| t.to_dtype(self.compute))
            .map_err(tensor_err("uploading the query"))?;
        // Which rows of which chunk each requested page is.
        let mut wanted: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.chunks.len()];
        for (out, v) in pages.iter().enumerate() {
            if v.n_tokens == 0 {
                continue; // an empty page scores 0, as on the CPU
            }
            let &(c, r) = self.rows.get(&v.page_id).ok_or_else(|| {
                IndexError::Invalid(format!(
                    "page {} is not resident in the tensor scorer; build it again for this snapshot",
                    v.page_id
                ))
            })?;
            wanted[c].push((r, out));
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
