//! One batch through the model: pack pixels into the staging buffer, copy them to the device,
//! run the vision tower and the language model, and bring the vectors back. Each step is timed
//! on the stage clock; a GPU out-of-memory halves the batch and retries, so no page is lost.

use crate::stage::{Stage, StageClock};
use anyhow::Result;
use candle_core::{Device, Tensor};
use pagesight_loader::RenderedPage;
use pagesight_model::colqwen::{ColQwen, PageEmbedding};
use pagesight_model::PreprocessConfig;
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct CopyTimings {
    pub h2d_bytes: u64,
    pub h2d_secs: f64,
    /// Time compute waited for the copy (all of it in the synchronous path).
    pub copy_critical_secs: f64,
}

/// The synchronous path: every step finishes before the next starts.
pub fn embed_pages(
    model: &ColQwen,
    pages: &[RenderedPage],
    pre: &PreprocessConfig,
    staging: &mut Vec<f32>,
    clock: &mut StageClock,
) -> Result<(Vec<PageEmbedding>, CopyTimings)> {
    clock.switch(Stage::Stage);
    let need = pagesight_loader::staging::batch_floats(pages, pre);
    if staging.len() < need {
        // Grows to the largest batch seen, then is reused.
        staging.resize(need, 0.0);
    }
    let batch = pagesight_loader::pack_batch(pages, pre, staging)?;
    let rows = batch
        .grid_thw
        .iter()
        .map(|g| (g[0] * g[1] * g[2]) as usize)
        .sum::<usize>();
    let row_len = batch.pixel_values.len() / rows.max(1);

    clock.switch(Stage::H2d);
    let t0 = Instant::now();
    let pixels = Tensor::from_slice(batch.pixel_values, (rows, row_len), &Device::Cpu)?
        .to_device(model.device())?;
    model.device().synchronize()?;
    let h2d_secs = t0.elapsed().as_secs_f64();
    let timings = CopyTimings {
        h2d_bytes: std::mem::size_of_val(batch.pixel_values) as u64,
        h2d_secs,
        copy_critical_secs: h2d_secs,
    };

    clock.switch(Stage::Vision);
    let vision = model.vision_forward(&pixels, &batch.grid_thw)?;
    model.device().synchronize()?;

    clock.switch(Stage::Lm);
    let (projected, tokens) = model.lm_project(&vision, &batch.grid_thw)?;
    model.device().synchronize()?;

    clock.switch(Stage::D2h);
    let embs = model.page_embeddings(&projected, &tokens, &batch.grid_thw)?;
    Ok((embs, timings))
}

/// `embed_pages`, halving the batch on out-of-memory until single pages. Returns the embeddings
/// in page order and whether a split happened (so the caller lowers its batch size).
pub fn embed_with_retry(
    model: &ColQwen,
    pages: &[RenderedPage],
    pre: &PreprocessConfig,
    staging: &mut Vec<f32>,
    clock: &mut StageClock,
) -> Result<(Vec<PageEmbedding>, CopyTimings, bool)> {
    match embed_pages(model, pages, pre, staging, clock) {
        Ok((e, t)) => Ok((e, t, false)),
        Err(e) if pagesight_model::error::is_out_of_memory(&e) && pages.len() > 1 => {
            let (a, b) = pages.split_at(pages.len() / 2);
            let (mut ea, ta, _) = embed_with_retry(model, a, pre, staging, clock)?;
            let (eb, tb, _) = embed_with_retry(model, b, pre, staging, clock)?;
            ea.extend(eb);
            let t = CopyTimings {
                h2d_bytes: ta.h2d_bytes + tb.h2d_bytes,
                h2d_secs: ta.h2d_secs + tb.h2d_secs,
                copy_critical_secs: ta.copy_critical_secs + tb.copy_critical_secs,
            };
            Ok((ea, t, true))
        }
        Err(e) if pagesight_model::error::is_out_of_memory(&e) => Err(e.context(
            "the GPU ran out of memory on a single page; lower --max-visual-tokens or use --quant nf4",
        )),
        Err(e) => Err(e),
    }
}
