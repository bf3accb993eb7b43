//! Main-memory latency as the exact scorer meets it: one thread follows a cycle of pointers through
//! 1 GiB of huge-page memory, in random order within each 2 MiB (each hop a miss that cannot
//! overlap the next; few page walks), alone and while the pool's other threads run a load — in
//! `bench search`, exact queries over the index. From the latency under load follows what one
//! core can read when its look-ahead rides on `LINES_IN_FLIGHT` outstanding misses: the bound the
//! summary sets beside the exact scorer's GB/s.

use pagesight_index::synthetic::Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Far past the largest L3 these hosts have (300 MiB, shared with other tenants).
const CHAIN_BYTES: usize = 1 << 30;
const LINE: usize = 64;
const REGION_BYTES: usize = 2 << 20;
/// ~30–60 ms per trial at 100–200 ns a hop.
const HOPS: usize = 300_000;
const TRIALS: usize = 5;
/// The L1D line-fill buffers of a Golden Cove / Raptor Cove core (Sapphire / Emerald Rapids):
/// software prefetches and demand misses each hold one until their line arrives.
pub const LINES_IN_FLIGHT: f64 = 16.0;

#[derive(Serialize, Debug, Clone)]
pub struct MemoryLatency {
    /// Median ns per hop with nothing else running.
    pub idle_ns: f64,
    /// Median ns per hop while `load_threads` threads run the load.
    pub loaded_ns: f64,
    pub load_threads: usize,
}

impl MemoryLatency {
    /// GB/s one core reads if it keeps `LINES_IN_FLIGHT` lines outstanding at the loaded latency.
    pub fn core_gb_per_s_bound(&self) -> f64 {
        LINES_IN_FLIGHT * LINE as f64 / self.loaded_ns
    }
}

/// A single cycle through every line of the buffer: the first word of each line holds the word
/// index of the next line to visit.
pub struct Chain(memmap2::MmapMut);

impl Chain {
    pub fn new() -> anyhow::Result<Self> {
        Self::with_bytes(CHAIN_BYTES)
    }

    fn with_bytes(bytes: usize) -> anyhow::Result<Self> {
        // Without transparent huge pages the hops also pay page walks.
        let mut m = pagesight_index::segment::huge_page_memory(bytes)?;
        let lines = bytes / LINE;
        let mut order: Vec<u32> = (0..lines as u32).collect();
        let mut rng = Rng::new(11);
        // Random within each 2 MiB region, the regions in turn: no prefetcher can follow a hop,
        // and a region's 4 KiB translations (a virtual machine's host may map its memory in
        // those) fit the TLB, so a hop costs the memory's latency and not a page walk.
        for region in order.chunks_mut(REGION_BYTES / LINE) {
            for i in (1..region.len()).rev() {
                region.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let words: &mut [u64] = bytemuck::cast_slice_mut(&mut m[..]);
        let stride = (LINE / 8) as u64;
        for (k, &line) in order.iter().enumerate() {
            words[line as usize * (LINE / 8)] = order[(k + 1) % lines] as u64 * stride;
        }
        Ok(Chain(m))
    }

    fn ns_per_hop(&self) -> f64 {
        let words: &[u64] = bytemuck::cast_slice(&self.0[..]);
        let mut at = 0usize;
        let t = Instant::now();
        for _ in 0..HOPS {
            at = words[at] as usize;
        }
        std::hint::black_box(at);
        t.elapsed().as_secs_f64() * 1e9 / HOPS as f64
    }

    fn median_ns(&self) -> f64 {
        pagesight_common::stats::median((0..TRIALS).map(|_| self.ns_per_hop()).collect())
    }

    /// Latency alone, then while all but one of the pool's threads run `load` over and over (in
    /// a pool of their own, so the chasing thread keeps a core to itself).
    pub fn measure(&self, load: impl Fn() + Sync) -> anyhow::Result<MemoryLatency> {
        let idle_ns = self.median_ns();
        let load_threads = rayon::current_num_threads().saturating_sub(1).max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(load_threads)
            .build()?;
        let stop = AtomicBool::new(false);
        let loaded_ns = std::thread::scope(|sc| {
            sc.spawn(|| {
                pool.install(|| {
                    while !stop.load(Ordering::Relaxed) {
                        load();
                    }
                })
            });
            // Let the load reach its pace before timing.
            std::thread::sleep(Duration::from_millis(50));
            let ns = self.median_ns();
            stop.store(true, Ordering::Relaxed);
            ns
        });
        Ok(MemoryLatency {
            idle_ns,
            loaded_ns,
            load_threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_visits_every_line_once_before_returning() {
        let bytes = 1 << 20;
        let chain = Chain::with_bytes(bytes).unwrap();
        let words: &[u64] = bytemuck::cast_slice(&chain.0[..]);
        let lines = bytes / LINE;
        let mut seen = vec![false; lines];
        let mut at = 0usize;
        for _ in 0..lines {
            let line = at / (LINE / 8);
            assert!(!seen[line], "line {line} visited twice");
            seen[line] = true;
            at = words[at] as usize;
        }
        assert_eq!(at, 0, "the cycle closes after every line");
    }
}
