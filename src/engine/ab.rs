//! A/B comparison: the same first N pages of a folder run under two settings, one after the
//! other, into a sink that writes nothing. Each side reports its own metrics series, so the two
//! runs can be overlaid and summarised.

use super::command::AbSide;
use super::control::RunControl;
use super::event::{AbSideResult, Event};
use super::ingest::pump::{FileTrack, Pump};
use super::ingest::replicas::ReplicaPlan;
use super::ingest::sink::DiscardSink;
use super::metrics::MetricsRecorder;
use super::stage::{Stage, StageClock};
use anyhow::{bail, Context, Result};
use crossbeam_channel::Sender;
use pagesight_loader::{discover, Loader, PageJobFile};
use std::path::Path;
use std::time::Instant;

/// The `context` of the `Error` that ends a failed comparison (the app ends its run by it).
pub const FAILURE_CONTEXT: &str = "A/B comparison";

/// Runs both sides; returns the event that reports the end (`AbFinished` or `Error`), which the
/// engine sends once the run no longer holds the engine's run slot.
pub fn run_to_end(
    folder: &Path,
    pages: usize,
    a: &AbSide,
    b: &AbSide,
    control: &RunControl,
    events: &Sender<Event>,
) -> Event {
    let result = (|| -> Result<(AbSideResult, AbSideResult)> {
        let ra = run_side(folder, pages, a, control, events)?;
        let _ = events.send(Event::AbSideFinished(ra.clone()));
        if control.is_cancelled() {
            bail!("comparison cancelled after side '{}'", a.label);
        }
        let rb = run_side(folder, pages, b, control, events)?;
        let _ = events.send(Event::AbSideFinished(rb.clone()));
        Ok((ra, rb))
    })();
    match result {
        Ok((a, b)) => Event::AbFinished { a, b },
        Err(e) => Event::Error {
            context: FAILURE_CONTEXT.into(),
            message: format!("{e:#}"),
            request_id: None,
        },
    }
}

/// Runs one side over the first `pages` pages of the folder (in discovery order).
pub fn run_side(
    folder: &Path,
    pages: usize,
    side: &AbSide,
    control: &RunControl,
    events: &Sender<Event>,
) -> Result<AbSideResult> {
    let discovery =
        discover(folder).with_context(|| format!("cannot read folder {}", folder.display()))?;
    if discovery.files.is_empty() {
        bail!("no PDF files under {}", folder.display());
    }
    // Start-up is not part of the comparison: each side's timing starts after it.
    let mut startup = StageClock::start(Stage::Discover);
    let model = super::ingest::load_model(&side.settings.model, events, &mut startup)?;
    let pre = model.preprocess_config();
    let mut tracks = Vec::new();
    let mut jobs = Vec::new();
    for f in discovery.files {
        jobs.push(PageJobFile {
            file_index: tracks.len(),
            path: f.path.clone(),
            first_page: 1,
        });
        tracks.push(FileTrack::new(f.hash, f.path, 1));
    }
    let started = Instant::now();
    let loader = Loader::start(jobs, &side.settings.loader, &pre)?;
    let mut recorder = MetricsRecorder::new(&side.settings.replica_devices()?);
    let mut pump = Pump {
        model: &model,
        pre: &pre,
        control,
        events,
        live: side.settings.live.clone(),
        max_pages: Some(pages as u64),
        replicas: ReplicaPlan::for_settings(&side.settings)?,
    };
    let mut sink = DiscardSink::default();
    let out = pump.run(&loader, &mut tracks, &mut sink, &mut recorder)?;
    loader.cancel();
    let wall_secs = started.elapsed().as_secs_f64();
    let total = recorder.total();
    Ok(AbSideResult {
        label: side.label.clone(),
        settings: side.settings.clone(),
        pages: out.pages,
        wall_secs,
        pages_per_sec: out.pages as f64 / wall_secs.max(1e-9),
        copy_critical_secs: total.copy_critical_secs,
        gpu_busy: total.gpu_busy_secs.map(|b| b / wall_secs.max(1e-9)),
        gpu_idle_between_batches: recorder.gpu_idle_between_batches(),
        stages: total.stages,
        series: recorder.series().to_vec(),
        replicas: out.replicas,
    })
}
