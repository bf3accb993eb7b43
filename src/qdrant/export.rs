//! `pagesight export qdrant`: an index's pages into a collection, one point per page.
//!
//! What the collection already holds is read from the collection itself (its point ids, which
//! are derived from each page's content hash and number, `point`), not from a state file kept
//! beside the index: the collection is the only truth about what the server has. A state file
//! would go stale without our knowing — a collection deleted or restored from a snapshot, a
//! second index exported into it, a server that lost its last writes — and the export would then
//! skip pages the server does not have. Listing ids costs one scroll without payload or vectors.
//!
//! So the export is idempotent (a second run sends nothing), incremental (only pages the
//! collection lacks are sent; points of pages the index no longer has — replaced or deleted
//! files — are removed) and resumable (every batch is acknowledged durably, `wait`, before the
//! next; after an interruption the next run sends only what the collection lacks).

use super::collection;
use super::error::{RemoteError, Result};
use super::point::{self, PageToSend};
use super::server::{CallError, Server};
use pagesight_index::{IndexReader, Searcher};
use qdrant_client::qdrant::{DeletePointsBuilder, PointId, PointsIdsList, UpsertPointsBuilder};
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExportOptions {
    /// Pages per upsert request at most.
    pub batch_pages: usize,
    /// Vector bytes (as sent, f32) per request at most: Qdrant refuses requests above its
    /// `max_request_size_mb` (32 MiB by default).
    pub batch_bytes: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            batch_pages: 64,
            batch_bytes: 16 << 20,
        }
    }
}

/// Where an export stands after each acknowledged batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportProgress {
    pub sent: usize,
    pub to_send: usize,
    pub batches: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExportReport {
    pub url: String,
    pub collection: String,
    /// The collection did not exist and was made by this export.
    pub created: bool,
    pub pages_in_index: usize,
    /// Pages the collection held already (not sent again).
    pub already_there: usize,
    pub sent: usize,
    /// Points removed because the index no longer has their page.
    pub removed: usize,
    pub batches: usize,
    /// Calls tried again after the server failed them transiently.
    pub retries: u64,
    /// The caller stopped the export before everything was sent.
    pub stopped_early: bool,
    pub seconds: f64,
}

/// Exports the last commit of the index in `index_dir` into `collection`. `progress` is told
/// after each acknowledged batch and may stop the export there (`Break`).
pub fn export(
    index_dir: &Path,
    server: &Server,
    collection: &str,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(&ExportProgress) -> ControlFlow<()>,
) -> Result<ExportReport> {
    let t0 = Instant::now();
    let searcher = IndexReader::open(index_dir)?.open_searcher()?;
    let provenance = searcher.provenance().clone();
    let created = collection::ensure(server, collection, &provenance)?;
    let there = if created {
        HashSet::new()
    } else {
        collection::point_ids(server, collection)?
    };
    let pages = point::pages_of(&searcher);
    let local: HashSet<u64> = pages.iter().map(|p| p.point_id).collect();
    let stale: Vec<u64> = there.difference(&local).copied().collect();
    remove(server, collection, &stale)?;
    let mut seen = HashSet::new();
    let to_send: Vec<PageToSend> = pages
        .iter()
        .filter(|p| !there.contains(&p.point_id) && seen.insert(p.point_id))
        .copied()
        .collect();
    let mut report = ExportReport {
        url: server.url().into(),
        collection: collection.into(),
        created,
        pages_in_index: pages.len(),
        already_there: pages.len() - to_send.len(),
        sent: 0,
        removed: stale.len(),
        batches: 0,
        retries: 0,
        stopped_early: false,
        seconds: 0.0,
    };
    let provenance_value = point::provenance_value(&provenance);
    for batch in batches(&searcher, &to_send, opts) {
        let points = batch
            .iter()
            .map(|p| point::build_point(&searcher, p, &provenance_value))
            .collect::<pagesight_index::Result<Vec<_>>>()?;
        upsert(server, collection, points)?;
        report.sent += batch.len();
        report.batches += 1;
        let at = ExportProgress {
            sent: report.sent,
            to_send: to_send.len(),
            batches: report.batches,
        };
        if progress(&at).is_break() && report.sent < to_send.len() {
            report.stopped_early = true;
            break;
        }
    }
    report.retries = server.retries();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// `to_send` cut into requests of at most `batch_pages` pages and `batch_bytes` vector bytes
/// (a single page above the byte cap goes alone).
fn batches<'a>(
    searcher: &Searcher,
    to_send: &'a [PageToSend],
    opts: &ExportOptions,
) -> Vec<&'a [PageToSend]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in to_send.iter().enumerate() {
        let b = point::wire_bytes(searcher, p);
        let full =
            i - start >= opts.batch_pages.max(1) || (i > start && bytes + b > opts.batch_bytes);
        if full {
            out.push(&to_send[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < to_send.len() {
        out.push(&to_send[start..]);
    }
    out
}

/// A collection that vanished mid-export is said as such; anything else as the server said it.
fn gone_or(server: &Server, collection: &str, what: &str) -> impl Fn(CallError) -> RemoteError {
    let (url, collection, what) = (
        server.url().to_string(),
        collection.to_string(),
        what.to_string(),
    );
    move |e| match e {
        CallError::NotFound(_) => RemoteError::CollectionGone {
            url: url.clone(),
            collection: collection.clone(),
        },
        other => other.into_remote(&url, &what),
    }
}

fn upsert(
    server: &Server,
    collection: &str,
    points: Vec<qdrant_client::qdrant::PointStruct>,
) -> Result<()> {
    server
        .call_classified(|c| {
            // Acknowledged only once applied: the next export's listing then sees these points.
            let request = UpsertPointsBuilder::new(collection, points.clone()).wait(true);
            async move { c.upsert_points(request).await }
        })
        .map_err(gone_or(server, collection, "sending pages"))?;
    Ok(())
}

fn remove(server: &Server, collection: &str, ids: &[u64]) -> Result<()> {
    for chunk in ids.chunks(1000) {
        let list = PointsIdsList {
            ids: chunk.iter().map(|&id| PointId::from(id)).collect(),
        };
        server
            .call_classified(|c| {
                let request = DeletePointsBuilder::new(collection)
                    .points(list.clone())
                    .wait(true);
                async move { c.delete_points(request).await }
            })
            .map_err(gone_or(
                server,
                collection,
                "removing the points of pages the index no longer has",
            ))?;
    }
    Ok(())
}
