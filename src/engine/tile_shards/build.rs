//! Loads each shard onto its device, all at once (a thread per shard): on a CUDA card its pages'
//! tiles through a stream of its own (`TensorScorer`, the fused kernel where it applies); on a
//! CPU stand-in nothing is copied, the CPU kernels score the shard's pages where they lie.

use super::{describe, hooks, ShardDevices};
use crate::settings::DeviceChoice;
use pagesight_index::search::{CpuExact, PageScorer, PageView, Searcher};
use pagesight_index::sharded_scorer::{Shard, ShardedScorer};
use pagesight_index::tensor_scorer::{TensorKernel, TensorScorer};
use std::ops::Range;

/// The sharded scorer for `searcher`'s snapshot over `shards` (device of the list, pages) and
/// the words that describe it; or why the CPU scores instead, naming the device that failed.
pub fn build(
    searcher: &Searcher,
    devices: &ShardDevices,
    shards: &[(usize, Range<usize>)],
    page_bytes: &[u64],
) -> Result<(Box<dyn PageScorer>, String), String> {
    let views: Vec<PageView<'_>> = (0..searcher.num_pages())
        .map(|i| searcher.page_view(i))
        .collect();
    let dim = searcher.provenance().dim;
    let loaded: Vec<Result<(Shard, Option<TensorKernel>), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter()
            .map(|(d, pages)| {
                let (d, pages, views) = (*d, pages.clone(), &views);
                let device = devices.devices[d];
                let bytes: u64 = page_bytes[pages.clone()].iter().sum();
                let load = move || load_shard(d, device, &views[pages.clone()], dim, bytes, pages);
                std::thread::Builder::new()
                    .name(format!("pagesight-shard-load-{d}"))
                    .spawn_scoped(scope, load)
                    .map_err(|e| format!("could not start loading the shard on {device} ({e})"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err("loading a shard panicked".into())),
                Err(e) => Err(e),
            })
            .collect()
    });
    let (shards, kernels): (Vec<Shard>, Vec<Option<TensorKernel>>) = loaded
        .into_iter()
        .collect::<Result<Vec<_>, String>>()?
        .into_iter()
        .unzip();
    let how = match kernels.first().copied().flatten() {
        None => format!(
            "CPU exact MaxSim ({}), a thread per shard",
            pagesight_index::maxsim::detected_isa().name()
        ),
        Some(TensorKernel::Fused) => "GPU, fused MaxSim kernel".into(),
        Some(TensorKernel::Matmul) => "GPU, MaxSim as matmuls".into(),
    };
    let label = describe(&how, devices.noun(), &shards);
    let order = views.iter().map(|v| v.page_id).collect();
    let scorer = ShardedScorer::new(order, shards)
        .map_err(|e| format!("could not shard the index's vectors ({e}): scored on the CPU"))?;
    Ok((Box::new(scorer), label))
}

/// Device `index` of the list (`device`) takes `views`, the pages at `pages`.
fn load_shard(
    index: usize,
    device: DeviceChoice,
    views: &[PageView<'_>],
    dim: usize,
    bytes: u64,
    pages: Range<usize>,
) -> Result<(Shard, Option<TensorKernel>), String> {
    let failed = |why: String| {
        format!(
            "{device} could not hold its shard of the index's vectors ({} pages, {:.2} GiB): \
             {why}: scored on the CPU",
            views.len(),
            bytes as f64 / (1u64 << 30) as f64
        )
    };
    if hooks::out_of_memory(index) {
        return Err(failed(format!(
            "out of memory (the {} test hook)",
            crate::env_vars::SHARD_OOM
        )));
    }
    let (scorer, held, kernel): (Box<dyn PageScorer>, u64, _) = match device {
        DeviceChoice::Cuda(n) => {
            // A stream of its own: the query model's kernels do not queue behind the copies.
            let on =
                candle_core::Device::new_cuda_with_stream(n).map_err(|e| failed(e.to_string()))?;
            let s = TensorScorer::from_views(
                views,
                dim,
                &on,
                candle_core::DType::F16,
                crate::resident_tiles::RESIDENT_CHUNK_PAGES,
            )
            .map_err(|e| failed(e.to_string()))?;
            let (held, kernel) = (s.resident_bytes(), s.kernel());
            (Box::new(s), held, Some(kernel))
        }
        _ => (
            Box::new(CpuExact(pagesight_index::maxsim::detected_isa())),
            0,
            None,
        ),
    };
    let shard = Shard {
        device: device.to_string(),
        pages,
        bytes: held,
        scorer,
    };
    Ok((shard, kernel))
}
