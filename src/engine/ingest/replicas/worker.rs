//! One model replica's thread: takes batches from the shared work queue as fast as its device
//! finishes them, runs them through its own `BatchRunner` (on CUDA its own staging ring, streams
//! and scratch) and sends each finished batch back. On any error it stops and hands back every
//! page it took and did not deliver, so the pool can redo them on the others.

use super::super::runner::{self, Done};
use crate::settings::{ModelSettings, TransferMode};
use crate::stage::{Stage, StageClock, StageTimes};
use anyhow::Result;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use pagesight_loader::RenderedPage;
use pagesight_model::colqwen::ColQwen;
use pagesight_model::PreprocessConfig;
use std::time::Instant;

/// A batch handed out by the pool.
pub struct Work {
    pub mode: TransferMode,
    pub pages: Vec<RenderedPage>,
}

/// What a replica tells the pool.
pub enum FromReplica {
    Done {
        replica: usize,
        done: Done,
        /// Time in its runner (submit or flush) that produced this result.
        busy_secs: f64,
        /// Its own clock since its previous result.
        stages: StageTimes,
    },
    /// It stopped; `unfinished` are the pages it took and did not deliver.
    Failed {
        replica: usize,
        error: String,
        unfinished: Vec<RenderedPage>,
    },
}

/// The replica's model: the run's own (loaded before the pool, the first device) or loaded on
/// this thread from the same settings on another device.
pub enum ReplicaModel<'a> {
    Shared(&'a ColQwen),
    Load(ModelSettings),
}

pub struct Replica<'a> {
    pub replica: usize,
    pub model: ReplicaModel<'a>,
    pub pre: &'a PreprocessConfig,
    pub max_batch: usize,
    pub work: Receiver<Work>,
    pub results: Sender<FromReplica>,
    /// Fail when handed a batch after this many (the `REPLICA_FAIL` test hook).
    pub fail_after: Option<u64>,
}

/// The typed failure of the test hook.
#[derive(Debug, thiserror::Error)]
#[error("injected device failure of replica {replica} after {batches} batches (test hook)")]
pub struct InjectedFailure {
    replica: usize,
    batches: u64,
}

/// Sends `Failed` with the undelivered pages when the replica ends with an error or a panic.
struct Unfinished {
    replica: usize,
    pages: Vec<RenderedPage>,
    results: Sender<FromReplica>,
    error: Option<String>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let error = match self.error.take() {
            Some(e) => e,
            None if std::thread::panicking() => "the replica's thread panicked".into(),
            None => return,
        };
        let _ = self.results.send(FromReplica::Failed {
            replica: self.replica,
            error,
            unfinished: std::mem::take(&mut self.pages),
        });
    }
}

impl Replica<'_> {
    /// The thread's body: serves batches until the queue closes or the replica fails.
    pub fn run(self) {
        let mut unfinished = Unfinished {
            replica: self.replica,
            pages: Vec::new(),
            results: self.results.clone(),
            error: None,
        };
        if let Err(e) = self.serve(&mut unfinished.pages) {
            unfinished.error = Some(format!("{e:#}"));
        }
    }

    fn serve(&self, unfinished: &mut Vec<RenderedPage>) -> Result<()> {
        let loaded;
        let model = match &self.model {
            ReplicaModel::Shared(m) => *m,
            ReplicaModel::Load(settings) => {
                loaded = load(settings)?;
                &loaded
            }
        };
        bind_to_thread(model.device())?;
        let mut runner = runner::for_model(model, self.pre, self.max_batch)?;
        let mut clock = StageClock::start(Stage::Render);
        let mut batches = 0u64;
        loop {
            let work = match self.work.try_recv() {
                Ok(w) => w,
                Err(TryRecvError::Empty) => {
                    // Nothing waiting: deliver what is still in flight before waiting, so no
                    // finished page sits here while the pool waits for it.
                    let t = Instant::now();
                    let done = runner.flush(&mut clock)?;
                    self.deliver(done, t, &mut clock, unfinished);
                    clock.switch(Stage::Render);
                    match self.work.recv() {
                        Ok(w) => w,
                        Err(_) => return Ok(()),
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            unfinished.extend(work.pages.iter().cloned());
            if self.fail_after == Some(batches) {
                return Err(InjectedFailure {
                    replica: self.replica,
                    batches,
                }
                .into());
            }
            let t = Instant::now();
            let done = runner.submit(work.mode, work.pages, &mut clock)?;
            self.deliver(done, t, &mut clock, unfinished);
            batches += 1;
        }
        let t = Instant::now();
        let done = runner.flush(&mut clock)?;
        self.deliver(done, t, &mut clock, unfinished);
        Ok(())
    }

    /// Sends finished batches; their pages are no longer this replica's to redo.
    fn deliver(
        &self,
        done: Vec<Done>,
        since: Instant,
        clock: &mut StageClock,
        unfinished: &mut Vec<RenderedPage>,
    ) {
        if done.is_empty() {
            return;
        }
        let busy = since.elapsed().as_secs_f64() / done.len() as f64;
        for d in done {
            unfinished.retain(|u| {
                !d.pages
                    .iter()
                    .any(|p| p.file_index == u.file_index && p.page == u.page)
            });
            let _ = self.results.send(FromReplica::Done {
                replica: self.replica,
                done: d,
                busy_secs: busy,
                stages: clock.take(Stage::Render),
            });
        }
    }
}

/// Loads a replica on this thread (with `--quant`, the first replica's load left the quantised
/// weights in the cache, so this is a cache read) and warms up its kernels.
fn load(settings: &ModelSettings) -> Result<ColQwen> {
    let model = ColQwen::load(settings)?;
    if !model.device().is_cpu() {
        model.warm_up()?;
    }
    Ok(model)
}

/// Makes the replica's CUDA context current on this thread: the executor's own driver calls
/// (pinned buffers, events, copies) act on the thread's current context.
fn bind_to_thread(device: &candle_core::Device) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(d) = device {
        d.cuda_stream().context().bind_to_thread()?;
    }
    let _ = device;
    Ok(())
}
