//! An ingest run: discover the folder, decide per file (skip / resume / ingest / remove), load
//! the model, render pages in worker processes, embed them in batches and commit them to the
//! index. Everything committed survives a cancel or a crash; a re-run picks up where it stopped.

pub mod embed_step;
pub mod plan;
pub mod pump;
pub mod replicas;
pub mod runner;
pub mod sink;

use super::control::RunControl;
use super::event::{Event, FileReport, FileStatus, IngestSummary};
use super::metrics::MetricsRecorder;
use super::model_shelf::ModelShelf;
use super::settings::{Compute, IngestSettings, ModelSettings};
use super::stage::{Stage, StageClock};
use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use pagesight_index::{Index, Provenance};
use pagesight_loader::{discover, Loader, PageJobFile};
use pagesight_model::colqwen::ColQwen;
use plan::FilePlan;
use pump::{FileTrack, Pump};
use replicas::ReplicaPlan;
use sink::{IndexSink, PageSink};
use std::path::Path;
use std::time::Instant;

/// The `context` of the `Error` that ends a failed ingest of `folder`: the app recognises the end
/// of its run by it (other errors during a run, e.g. a refused transfer mode, do not end it).
pub fn failure_context(folder: &Path) -> String {
    format!("ingest of {}", folder.display())
}

/// Runs an ingest; returns the event that reports its end (`IngestFinished` or `Error`), which
/// the engine sends once the run no longer holds the engine's run slot.
pub fn run_to_end(
    folder: &Path,
    index: &Path,
    settings: &IngestSettings,
    shelf: &ModelShelf,
    control: &RunControl,
    events: &Sender<Event>,
) -> Event {
    match run(folder, index, settings, shelf, control, events) {
        Ok(summary) => Event::IngestFinished(summary),
        Err(e) => Event::Error {
            context: failure_context(folder),
            message: format!("{e:#}"),
            request_id: None,
        },
    }
}

/// Loads the model and says what the user must know about it (random weights, first-launch
/// GPU kernel compilation). `clock` is switched through the start-up stages (model load,
/// quantisation, kernel compilation) and left running `ModelLoad`'s successor, `Index`.
pub fn load_model(
    settings: &ModelSettings,
    events: &Sender<Event>,
    clock: &mut StageClock,
) -> Result<ColQwen> {
    clock.switch(Stage::ModelLoad);
    let model =
        ColQwen::load(settings).with_context(|| format!("loading model '{}'", settings.model))?;
    clock.switch(Stage::KernelCompile);
    clock.reattribute(Stage::ModelLoad, Stage::Quantize, model.quantize_secs());
    if let Some(report) = model.quant_cache_report() {
        for message in report.warnings.iter().chain(&report.write_error) {
            let _ = events.send(Event::Notice {
                message: message.clone(),
            });
        }
    }
    if model.is_random() {
        let _ = events.send(Event::Notice {
            message: format!(
                "model '{}' has random weights: vectors are deterministic but rankings are meaningless",
                settings.model
            ),
        });
    }
    if !model.device().is_cpu() {
        // The first launch of each kernel module compiles it (slow while the caches are cold):
        // the user sees why nothing moves yet.
        let _ = events.send(Event::PreparingGpuKernels {
            done: false,
            secs: 0.0,
        });
        let t = Instant::now();
        model.warm_up()?;
        let _ = events.send(Event::PreparingGpuKernels {
            done: true,
            secs: t.elapsed().as_secs_f64(),
        });
    }
    clock.switch(Stage::Index);
    Ok(model)
}

/// What the index records about the vectors' maker.
pub fn provenance(model: &ColQwen, settings: &ModelSettings) -> Provenance {
    let id = model.identity();
    Provenance {
        model: settings.model.clone(),
        adapter: id.adapter.clone(),
        // The adapter changes the vectors as much as the base weights do.
        checkpoint_hash: match &id.adapter_hash {
            Some(a) => format!("{}+adapter:{a}", id.checkpoint_hash),
            None => id.checkpoint_hash,
        },
        quant: settings.quant.name().into(),
        quant_scope: settings.effective_quant_scope().name().into(),
        dtype: settings.dtype.name().into(),
        lora: id.lora.map(|m| m.name().to_string()),
        compute: (id.compute != Compute::Dtype).then(|| id.compute.name().to_string()),
        max_visual_tokens: id.max_visual_tokens,
        query_prompt: format!("{}{{query}}{}", id.query_prefix, id.query_augmentation),
        dim: id.embedding_dim,
        random_weights: model.is_random(),
    }
}

/// Ingests `folder` into `index_dir` with the shelf's model when it fits `settings` (else a
/// fresh load), and leaves the model on the shelf at the end for the searches that follow.
pub fn run(
    folder: &Path,
    index_dir: &Path,
    settings: &IngestSettings,
    shelf: &ModelShelf,
    control: &RunControl,
    events: &Sender<Event>,
) -> Result<IngestSummary> {
    let emit = |e: Event| {
        let _ = events.send(e);
    };
    let started = Instant::now();
    let mut clock = StageClock::start(Stage::Discover);
    emit(Event::IngestStarted {
        folder: folder.to_path_buf(),
        index: index_dir.to_path_buf(),
        settings: settings.clone(),
        model_note: None,
    });
    let discovery =
        discover(folder).with_context(|| format!("cannot read folder {}", folder.display()))?;
    let mut failures = Vec::new();
    for (path, reason) in &discovery.errors {
        let r = FileReport {
            path: path.clone(),
            status: FileStatus::Failed {
                page: None,
                reason: reason.clone(),
            },
        };
        emit(Event::FileStatus(r.clone()));
        failures.push(r);
    }
    let replicas = ReplicaPlan::for_settings(settings)?;
    let model = match shelf.take_fitting(&settings.model) {
        Some((_, model)) => {
            clock.switch(Stage::Index);
            model
        }
        None => load_model(&settings.model, events, &mut clock)?,
    };
    let mut index = Index::open_or_create(index_dir, &provenance(&model, &settings.model))
        .with_context(|| format!("opening index {}", index_dir.display()))?;
    clock.switch(Stage::Discover);
    let plan = plan::plan(discovery.files, &index, settings.prune);
    for (hash, path, why) in &plan.removals {
        index.remove_file(hash)?;
        tracing::info!("removing {} from the index: {why}", path.display());
        emit(Event::FileStatus(FileReport {
            path: path.clone(),
            status: FileStatus::Removed,
        }));
    }
    let files_removed = plan.removals.len() as u64;
    let mut tracks = Vec::new();
    let mut jobs = Vec::new();
    let mut skipped = 0u64;
    for (f, p) in plan.files {
        match p {
            FilePlan::Skip { pages } => {
                skipped += 1;
                emit(Event::FileStatus(FileReport {
                    path: f.path.clone(),
                    status: FileStatus::SkippedUnchanged { pages },
                }));
            }
            FilePlan::Duplicate { of } => {
                skipped += 1;
                emit(Event::FileStatus(FileReport {
                    path: f.path.clone(),
                    status: FileStatus::Duplicate { of },
                }));
            }
            FilePlan::Ingest { first_page } => {
                jobs.push(PageJobFile {
                    file_index: tracks.len(),
                    path: f.path.clone(),
                    first_page,
                });
                tracks.push(FileTrack::new(f.hash, f.path, first_page));
            }
        }
    }
    emit(Event::Discovered {
        files: (tracks.len() as u64) + skipped,
        new_or_changed: tracks.len() as u64,
        unchanged: skipped,
    });
    let mut sink = IndexSink::new(
        index,
        settings.commit_every_pages,
        settings.commit_every_secs,
    );
    if files_removed > 0 {
        sink.index.commit()?;
    }
    let pre = model.preprocess_config();
    let mut recorder = MetricsRecorder::new(&settings.replica_devices()?);
    recorder.record_stages(&clock.take(Stage::Render));
    let outcome = if jobs.is_empty() {
        pump::PumpOutcome::default()
    } else {
        let loader = Loader::start(jobs, &settings.loader, &pre)?;
        let mut pump = Pump {
            model: &model,
            pre: &pre,
            control,
            events,
            live: settings.live.clone(),
            max_pages: settings.max_pages.map(|n| n as u64),
            replicas: replicas.clone(),
        };
        let out = pump.run(&loader, &mut tracks, &mut sink, &mut recorder)?;
        loader.cancel();
        out
    };
    sink.maybe_commit(true)?;
    shelf.put(settings.model.clone(), model);
    failures.extend(outcome.failures);
    let wall_secs = started.elapsed().as_secs_f64();
    Ok(IngestSummary {
        pages_ingested: outcome.pages,
        files_done: outcome.files_done,
        files_failed: failures.len() as u64,
        files_skipped: skipped,
        files_removed,
        wall_secs,
        pages_per_sec: outcome.pages as f64 / wall_secs.max(1e-9),
        stages: recorder.total().stages,
        cancelled: outcome.cancelled,
        failures,
        replicas: outcome.replicas,
    })
}
