//! Puts the replicas' results back into the order the pump handed the pages out. The index's
//! resume point is a file's count of committed pages, so the pages of a file must reach the
//! index as a prefix, never page 5 before page 3 — whichever replica finished first. It also
//! refuses a page delivered twice or never handed out: the exactly-once check of the pool.

use super::super::runner::Done;
use anyhow::{bail, Result};
use pagesight_loader::RenderedPage;
use pagesight_model::colqwen::PageEmbedding;
use std::collections::{BTreeMap, HashMap};

/// A page and its vectors waiting for the pages handed out before it.
struct Piece {
    page: RenderedPage,
    embedding: PageEmbedding,
    /// Which finished batch it came from: consecutive pieces of one batch go out as one `Done`.
    origin: u64,
    /// The batch's timings, carried by its first page only (so each batch counts once).
    batch: Option<BatchFacts>,
}

/// What a `Done` says besides its pages.
struct BatchFacts {
    copy: super::super::embed_step::CopyTimings,
    gpu_busy_secs: Option<f64>,
    gpu_span_ms: Option<(f64, f64)>,
    split: bool,
}

#[derive(Default)]
pub struct PageOrder {
    next_seq: u64,
    /// Handed out and not back yet, by (file, page): unique within a run.
    seq_of: HashMap<(usize, u32), u64>,
    next_release: u64,
    ready: BTreeMap<u64, Piece>,
    batches_seen: u64,
}

impl PageOrder {
    /// Numbers pages in the order they are handed out.
    pub fn hand_out(&mut self, pages: &[RenderedPage]) {
        for p in pages {
            self.seq_of.insert((p.file_index, p.page), self.next_seq);
            self.next_seq += 1;
        }
    }

    /// Takes a finished batch; returns what can go to the index now, in hand-out order.
    pub fn complete(&mut self, done: Done) -> Result<Vec<Done>> {
        let origin = self.batches_seen;
        self.batches_seen += 1;
        let mut facts = Some(BatchFacts {
            copy: done.copy,
            gpu_busy_secs: done.gpu_busy_secs,
            gpu_span_ms: done.gpu_span_ms,
            split: done.split,
        });
        for (page, embedding) in done.pages.into_iter().zip(done.embeddings) {
            let Some(seq) = self.seq_of.remove(&(page.file_index, page.page)) else {
                bail!(
                    "page {} of file #{} came back from a model replica twice, or was never \
                     handed out",
                    page.page,
                    page.file_index
                );
            };
            self.ready.insert(
                seq,
                Piece {
                    page,
                    embedding,
                    origin,
                    batch: facts.take(),
                },
            );
        }
        Ok(self.release())
    }

    fn release(&mut self) -> Vec<Done> {
        let mut out: Vec<(u64, Done)> = Vec::new();
        while let Some(piece) = self.ready.remove(&self.next_release) {
            self.next_release += 1;
            match out.last_mut() {
                Some((origin, d)) if *origin == piece.origin => {
                    d.pages.push(piece.page);
                    d.embeddings.push(piece.embedding);
                    if let Some(f) = piece.batch {
                        set_facts(d, f);
                    }
                }
                _ => {
                    let mut d = Done {
                        pages: vec![piece.page],
                        embeddings: vec![piece.embedding],
                        copy: Default::default(),
                        gpu_busy_secs: None,
                        gpu_span_ms: None,
                        split: false,
                    };
                    if let Some(f) = piece.batch {
                        set_facts(&mut d, f);
                    }
                    out.push((piece.origin, d));
                }
            }
        }
        out.into_iter().map(|(_, d)| d).collect()
    }
}

fn set_facts(d: &mut Done, f: BatchFacts) {
    d.copy = f.copy;
    d.gpu_busy_secs = f.gpu_busy_secs;
    d.gpu_span_ms = f.gpu_span_ms;
    d.split = f.split;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(file_index: usize, page: u32) -> RenderedPage {
        RenderedPage {
            file_index,
            page,
            page_count: 9,
            width: 28,
            height: 28,
            rgb: Vec::new(),
            text: String::new(),
            note: None,
            render_secs: 0.0,
            resize_secs: 0.0,
        }
    }

    fn done(pages: Vec<RenderedPage>) -> Done {
        let embeddings = pages
            .iter()
            .map(|p| PageEmbedding {
                vectors: vec![p.page as f32],
                n_tokens: 1,
                image_rows: 0..1,
                merged_grid: (1, 1),
            })
            .collect();
        Done {
            pages,
            embeddings,
            copy: Default::default(),
            gpu_busy_secs: None,
            gpu_span_ms: None,
            split: false,
        }
    }

    fn numbers(out: &[Done]) -> Vec<u32> {
        out.iter()
            .flat_map(|d| d.pages.iter().map(|p| p.page))
            .collect()
    }

    #[test]
    fn a_later_batch_waits_for_the_earlier_one() {
        let mut order = PageOrder::default();
        let first = vec![page(0, 1), page(0, 2)];
        let second = vec![page(0, 3), page(0, 4)];
        order.hand_out(&first);
        order.hand_out(&second);
        assert!(order.complete(done(second)).unwrap().is_empty());
        let out = order.complete(done(first)).unwrap();
        assert_eq!(numbers(&out), [1, 2, 3, 4]);
        assert_eq!(out.len(), 2, "each batch goes out as its own Done");
    }

    #[test]
    fn redone_pages_keep_their_place_and_a_page_back_twice_is_refused() {
        let mut order = PageOrder::default();
        order.hand_out(&[page(0, 1), page(0, 2), page(1, 1)]);
        // A failed replica's pages 1 and 3 come back from another replica together.
        assert!(order
            .complete(done(vec![page(0, 1), page(1, 1)]))
            .unwrap()
            .iter()
            .all(|d| d.pages.len() == 1));
        let out = order.complete(done(vec![page(0, 2)])).unwrap();
        assert_eq!(numbers(&out), [2, 1]);
        assert!(order.complete(done(vec![page(0, 2)])).is_err());
    }
}
