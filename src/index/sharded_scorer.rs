//! One `PageScorer` over several devices: each shard (a contiguous run of the snapshot's pages,
//! see `shards::split`) has its own scorer on its own device; a query runs every shard at once,
//! one thread each, and merges the shards' top-k lists (`shards::merge_top_k`), so the ranking
//! is the one a single device holding every page gives.

use super::format::{IndexError, Result};
use super::search::{PageScorer, PageView};
use super::shards::merge_top_k;
use std::collections::HashMap;
use std::ops::Range;

/// One device's share of the pages.
pub struct Shard {
    /// The device as the user names it (`cuda:1`, `cpu`).
    pub device: String,
    /// Positions of its pages in the snapshot's page order.
    pub pages: Range<usize>,
    /// Bytes it holds on its device (0 where nothing is copied there).
    pub bytes: u64,
    pub scorer: Box<dyn PageScorer>,
}

pub struct ShardedScorer {
    shards: Vec<Shard>,
    /// Every page id in the snapshot's order: a query over exactly these pages (the full scan)
    /// hands each shard its own run of them as they are.
    order: Vec<u64>,
    /// page id → shard, for a query over other pages (a prefilter's candidates).
    shard_of: HashMap<u64, usize>,
}

/// The pages of a query that one shard scores: a run of the query's own list, or a gathered
/// subset with each page's position in the query's list.
enum Routed<'a, 'p> {
    Run(&'a [PageView<'p>], usize),
    Gathered(Vec<PageView<'p>>, Vec<usize>),
}

impl<'p> Routed<'_, 'p> {
    fn views(&self) -> &[PageView<'p>] {
        match self {
            Routed::Run(v, _) => v,
            Routed::Gathered(v, _) => v,
        }
    }
}

impl ShardedScorer {
    /// `order`: every page id of the snapshot, in its order; the shards' `pages` must cover
    /// `0..order.len()` in turn.
    pub fn new(order: Vec<u64>, shards: Vec<Shard>) -> Result<Self> {
        let mut next = 0;
        for s in &shards {
            if s.pages.start != next || s.pages.end < s.pages.start {
                return Err(IndexError::Invalid(format!(
                    "shard on {} holds pages {:?}; expected a run from {next}",
                    s.device, s.pages
                )));
            }
            next = s.pages.end;
        }
        if next != order.len() {
            return Err(IndexError::Invalid(format!(
                "the shards hold {next} pages of {}",
                order.len()
            )));
        }
        let mut shard_of = HashMap::with_capacity(order.len());
        for (i, s) in shards.iter().enumerate() {
            for &id in &order[s.pages.clone()] {
                shard_of.insert(id, i);
            }
        }
        Ok(ShardedScorer {
            shards,
            order,
            shard_of,
        })
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Each shard's pages of `pages`.
    fn route<'a, 'p>(&self, pages: &'a [PageView<'p>]) -> Result<Vec<Routed<'a, 'p>>> {
        let full = pages.len() == self.order.len()
            && pages
                .iter()
                .zip(&self.order)
                .all(|(v, &id)| v.page_id == id);
        if full {
            return Ok(self
                .shards
                .iter()
                .map(|s| Routed::Run(&pages[s.pages.clone()], s.pages.start))
                .collect());
        }
        let mut views: Vec<Vec<PageView<'p>>> = self.shards.iter().map(|_| Vec::new()).collect();
        let mut outs: Vec<Vec<usize>> = self.shards.iter().map(|_| Vec::new()).collect();
        for (out, v) in pages.iter().enumerate() {
            let &s = self.shard_of.get(&v.page_id).ok_or_else(|| {
                IndexError::Invalid(format!(
                    "page {} is in none of the shards; build them again for this snapshot",
                    v.page_id
                ))
            })?;
            views[s].push(*v);
            outs[s].push(out);
        }
        Ok(views
            .into_iter()
            .zip(outs)
            .map(|(v, o)| Routed::Gathered(v, o))
            .collect())
    }

    /// `work` on every shard that has pages to score, at once: one thread per shard (the
    /// first on the caller's). An error names the shard's device.
    fn each_shard<T: Send>(
        &self,
        routed: &[Routed<'_, '_>],
        work: impl Fn(&dyn PageScorer, &[PageView<'_>]) -> Result<T> + Sync,
    ) -> Result<Vec<Option<T>>> {
        let run = |i: usize| -> Result<Option<T>> {
            let views = routed[i].views();
            if views.is_empty() {
                return Ok(None);
            }
            let shard = &self.shards[i];
            work(shard.scorer.as_ref(), views).map(Some).map_err(|e| {
                IndexError::Invalid(format!("scoring the shard on {}: {e}", shard.device))
            })
        };
        std::thread::scope(|scope| {
            let others: Vec<_> = (1..self.shards.len())
                .map(|i| {
                    std::thread::Builder::new()
                        .name(format!("pagesight-shard-{i}"))
                        .spawn_scoped(scope, move || run(i))
                })
                .collect();
            let mut out = Vec::with_capacity(self.shards.len());
            if !self.shards.is_empty() {
                out.push(run(0));
            }
            for (i, h) in others.into_iter().enumerate() {
                out.push(match h {
                    Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    // No thread to spare: this one scores the shard.
                    Err(_) => run(i + 1),
                });
            }
            out.into_iter().collect()
        })
    }
}

impl PageScorer for ShardedScorer {
    fn name(&self) -> String {
        let parts: Vec<String> = self
            .shards
            .iter()
            .map(|s| format!("{}:{}", s.device, s.scorer.name()))
            .collect();
        format!("sharded[{}]", parts.join(","))
    }

    fn score_all(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        pages: &[PageView<'_>],
    ) -> Result<Vec<f32>> {
        let routed = self.route(pages)?;
        let parts = self.each_shard(&routed, |s, views| s.score_all(q, nq, dim, views))?;
        let mut scores = vec![0f32; pages.len()];
        for (r, part) in routed.iter().zip(parts) {
            let Some(part) = part else { continue };
            match r {
                Routed::Run(_, start) => scores[*start..*start + part.len()].copy_from_slice(&part),
                Routed::Gathered(_, outs) => {
                    for (&o, s) in outs.iter().zip(part) {
                        scores[o] = s;
                    }
                }
            }
        }
        Ok(scores)
    }

    fn top_k(
        &self,
        q: &[f32],
        nq: usize,
        dim: usize,
        pages: &[PageView<'_>],
        k: usize,
    ) -> Result<Vec<(u64, f32)>> {
        let routed = self.route(pages)?;
        let parts = self.each_shard(&routed, |s, views| s.top_k(q, nq, dim, views, k))?;
        Ok(merge_top_k(parts.into_iter().flatten().collect(), k))
    }
}
