//! The index's page tiles kept on the GPU between searches, one snapshot at a time. A small
//! index is uploaded before the search that first needs it; a large one is uploaded on a thread
//! and a CUDA stream of its own while the CPU kernels answer, so the first search after opening a
//! library-size index does not wait for gigabytes to cross the bus (its answer says the CPU
//! scored it, and why).

use super::tile_shards::{self, Placement, ShardDevices};
use crossbeam_channel::{Receiver, TryRecvError};
use pagesight_index::search::{CpuExact, PageScorer, Searcher};
use pagesight_index::tensor_scorer::{TensorKernel, TensorScorer};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Page tiles may take at most this share of the GPU's free memory: an ingest may be sharing it.
pub(crate) const RESIDENT_SHARE_OF_FREE_VRAM: f64 = 0.5;

/// Pages per uploaded tile tensor.
pub(crate) const RESIDENT_CHUNK_PAGES: usize = 4096;

/// Tiles up to this size are uploaded before the search that needs them: a fraction of a second,
/// less than the CPU kernels would take over the same pages. Larger ones upload in the background.
const WAIT_FOR_UPLOAD_BYTES: u64 = 1 << 30;

/// The start of a search's note when the CPU answered because the GPU's copy of the index was
/// still on its way (a benchmark waits for the GPU by it).
pub const UPLOADING_NOTE: &str = "scored on the CPU while the index's vectors upload to the GPU";

/// Which tiles: one snapshot of one index, on the query model's device (`devices` empty) or
/// over a device set (`cuda:0,1`, `cuda:all`, `cpu,cpu`).
#[derive(Clone, PartialEq)]
struct Key {
    index: PathBuf,
    generation: u64,
    devices: String,
}

/// What an upload gives: the scorer and the words for it, or why the CPU scores.
type Uploaded = Result<(Box<dyn PageScorer>, String), String>;

/// One snapshot's page tiles on the GPU (or spread over several devices).
struct ResidentPages {
    key: Key,
    scorer: Box<dyn PageScorer>,
    label: String,
}

/// An upload running on its own thread.
struct Upload {
    key: Key,
    started: Instant,
    done: Receiver<Uploaded>,
}

#[derive(Default)]
pub struct ResidentTiles {
    resident: Option<ResidentPages>,
    upload: Option<Upload>,
    /// The snapshot whose tiles did not go to the GPU, and why: not tried again before the
    /// index's next commit.
    declined: Option<(Key, String)>,
}

/// The CPU kernels, or the tiles resident on the GPU (on one card or sharded over several).
pub enum ChosenScorer<'a> {
    Cpu(CpuExact),
    Resident(&'a dyn PageScorer),
}

impl ChosenScorer<'_> {
    pub fn get(&self) -> &dyn PageScorer {
        match self {
            ChosenScorer::Cpu(s) => s,
            ChosenScorer::Resident(s) => *s,
        }
    }
}

impl ResidentTiles {
    /// The scorer for `searcher`'s snapshot of `index`: its tiles on the GPU when the query model
    /// is there and they fit (and have arrived), or sharded over `shards` when the request names
    /// several devices, else the CPU kernels. The string says which ran; the note, why not the
    /// GPU when it was expected.
    pub fn scorer<'a>(
        &'a mut self,
        index: &Path,
        searcher: &Searcher,
        device: &candle_core::Device,
        shards: Option<&ShardDevices>,
        query_tokens: usize,
    ) -> (ChosenScorer<'a>, String, Option<String>) {
        let cpu = |note: Option<String>| {
            let isa = pagesight_index::maxsim::detected_isa();
            let label = format!(
                "CPU exact MaxSim ({}, {} threads)",
                pagesight_index::maxsim::kernel_for(isa, query_tokens),
                rayon::current_num_threads()
            );
            (ChosenScorer::Cpu(CpuExact(isa)), label, note)
        };
        // Nothing to keep on the GPU for an empty index; CPU stand-ins shard as cards would.
        if (!device.is_cuda() && shards.is_none()) || searcher.num_pages() == 0 {
            return cpu(None);
        }
        let key = Key {
            index: index.to_path_buf(),
            generation: searcher.generation(),
            devices: shards.map(|s| s.set.to_string()).unwrap_or_default(),
        };
        if let Some((_, why)) = self.declined.as_ref().filter(|(k, _)| *k == key) {
            return cpu(Some(why.clone()));
        }
        if let Some(pending) = self.upload.as_ref().filter(|u| u.key == key) {
            match pending.done.try_recv() {
                Err(TryRecvError::Empty) => {
                    let secs = pending.started.elapsed().as_secs_f64();
                    return cpu(Some(format!("{UPLOADING_NOTE} ({secs:.1} s so far)")));
                }
                Ok(done) => {
                    self.upload = None;
                    self.arrived(key.clone(), done);
                }
                Err(TryRecvError::Disconnected) => {
                    self.upload = None;
                    self.arrived(
                        key.clone(),
                        Err("the upload of the index's vectors stopped: scored on the CPU".into()),
                    );
                }
            }
        }
        let current = self.resident.as_ref().is_some_and(|r| r.key == key);
        if !current {
            // The old snapshot's tiles go first: two copies may not fit.
            self.resident = None;
            self.upload = None;
            if let Err(why) = self.load(key.clone(), searcher, device, shards) {
                self.declined = Some((key.clone(), why.clone()));
                return cpu(Some(why));
            }
        }
        match &self.resident {
            Some(r) if r.key == key => (
                ChosenScorer::Resident(r.scorer.as_ref()),
                r.label.clone(),
                None,
            ),
            _ if self.upload.is_some() => cpu(Some(UPLOADING_NOTE.into())),
            _ => {
                let why = self.declined.as_ref().map(|(_, why)| why.clone());
                cpu(why)
            }
        }
    }

    /// Starts putting the snapshot's tiles where `shards` (or, without, the query model's
    /// `device`) says: at once when they are small or nothing crosses a bus, else on a thread
    /// while the CPU answers. The error: why the CPU scores.
    fn load(
        &mut self,
        key: Key,
        searcher: &Searcher,
        device: &candle_core::Device,
        shards: Option<&ShardDevices>,
    ) -> Result<(), String> {
        let page_bytes = TensorScorer::page_bytes_for(searcher);
        let need: u64 = page_bytes.iter().sum();
        let wait = need <= WAIT_FOR_UPLOAD_BYTES;
        if let Some(set) = shards {
            let capacity = tile_shards::capacities(&set.devices)
                .map_err(|e| format!("{e}: scored on the CPU"))?;
            if let Placement::Shards(runs) = tile_shards::place(&page_bytes, &capacity, set)? {
                // CPU stand-ins copy nothing: no reason to wait for them on a thread.
                if wait || !set.on_cuda() {
                    let built = tile_shards::build(searcher, set, &runs, &page_bytes);
                    self.arrived(key, built);
                    return Ok(());
                }
                let (snapshot, set) = (searcher.clone(), set.clone());
                return self.start_upload(key, move || {
                    tile_shards::build(&snapshot, &set, &runs, &page_bytes)
                });
            }
        }
        // One device: the query model's.
        if !device.is_cuda() {
            return Err("the query model runs on the CPU: scored there".into());
        }
        if wait {
            self.arrived(key, upload_pages(searcher, device));
            return Ok(());
        }
        let ordinal = match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
            _ => 0,
        };
        let stream = candle_core::Device::new_cuda_with_stream(ordinal).map_err(|e| {
            format!("no CUDA stream for the index's vectors ({e}): scored on the CPU")
        })?;
        let snapshot = searcher.clone();
        self.start_upload(key, move || upload_pages(&snapshot, &stream))
    }

    /// Keeps an upload's outcome: the tiles, or why the snapshot is scored on the CPU.
    fn arrived(&mut self, key: Key, done: Uploaded) {
        match done {
            Ok((scorer, label)) => {
                self.declined = None;
                self.resident = Some(ResidentPages { key, scorer, label });
            }
            Err(why) => self.declined = Some((key, why)),
        }
    }

    /// Runs `job` (an upload, on CUDA streams of its own so that the query embedding's kernels
    /// do not queue behind the copies) on a thread; its outcome is picked up by a later search.
    fn start_upload(
        &mut self,
        key: Key,
        job: impl FnOnce() -> Uploaded + Send + 'static,
    ) -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("pagesight-tile-upload".into())
            .spawn(move || {
                let _ = tx.send(job());
            })
            .map_err(|e| format!("could not start the upload of the index's vectors ({e})"))?;
        self.upload = Some(Upload {
            key,
            started: Instant::now(),
            done: rx,
        });
        Ok(())
    }
}

/// Uploads `searcher`'s pages to `device` if they fit its free memory; the error is a sentence.
fn upload_pages(searcher: &Searcher, device: &candle_core::Device) -> Uploaded {
    let need = TensorScorer::resident_bytes_for(searcher);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let ordinal = match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
        _ => 0,
    };
    // Memory only: a full sample also reads NVML's PCIe counters, each of which blocks for its
    // sampling window, and the search would wait for them.
    if let Ok((used, total)) =
        super::gpu_monitor::GpuMonitor::open_cuda(ordinal).and_then(|m| m.memory())
    {
        let free = total.saturating_sub(used);
        if need as f64 > RESIDENT_SHARE_OF_FREE_VRAM * free as f64 {
            return Err(format!(
                "the index's vectors need {:.2} GiB of GPU memory and {:.2} GiB is free \
                 (at most half of it is used for search): scored on the CPU",
                gib(need),
                gib(free)
            ));
        }
    }
    let scorer = TensorScorer::new(
        searcher,
        device,
        candle_core::DType::F16,
        RESIDENT_CHUNK_PAGES,
    )
    .map_err(|e| {
        format!("could not keep the index's vectors on the GPU ({e}): scored on the CPU")
    })?;
    let how = match scorer.kernel() {
        TensorKernel::Fused => "fused MaxSim kernel",
        TensorKernel::Matmul => "MaxSim as matmuls",
    };
    let label = format!(
        "GPU, {how} ({} pages, {:.2} GiB resident)",
        scorer.resident_pages(),
        gib(scorer.resident_bytes())
    );
    Ok((Box::new(scorer), label))
}
