//! Multi-device ingest: one model replica per device, each on a thread of its own with its own
//! `BatchRunner`, fed from one shared work queue — a replica takes the next batch when it has
//! finished the last, so a slow or busy device takes fewer. `ReplicaPool` is the pump's
//! `BatchRunner` for such a run: the pump (the one loader consumer and the one index writer)
//! submits batches to it and sinks what comes back, in the order the pages were handed out.
//! A replica that fails is dropped with a notice and its unfinished pages go to the others.
//! With one device none of this runs: the pump drives the model's own runner as before.

mod fault_hook;
mod page_order;
mod worker;

use super::runner::{BatchRunner, Done};
use crate::event::{Event, ReplicaSummary};
use crate::settings::{DeviceChoice, IngestSettings, ModelSettings, TransferMode};
use crate::stage::{Stage, StageClock, StageTimes};
use anyhow::{anyhow, bail, Result};
use crossbeam_channel::{Receiver, Select, Sender};
use page_order::PageOrder;
use pagesight_loader::RenderedPage;
use pagesight_model::colqwen::ColQwen;
use pagesight_model::PreprocessConfig;
use std::collections::VecDeque;
use std::time::Instant;
use worker::{FromReplica, Replica, ReplicaModel, Work};

/// The devices of a multi-device run: the first runs the run's own model, each other one a
/// replica loaded from the same settings (one provenance: same dtype, quantisation, kernels).
#[derive(Clone, Debug)]
pub struct ReplicaPlan {
    pub devices: Vec<DeviceChoice>,
    pub model: ModelSettings,
}

impl ReplicaPlan {
    /// None when the settings name one device (the single-device path).
    pub fn for_settings(s: &IngestSettings) -> Result<Option<ReplicaPlan>> {
        let devices = s.replica_devices()?;
        if devices.len() <= 1 {
            return Ok(None);
        }
        if devices[0] != s.model.device {
            bail!(
                "the model's device ({}) is not the first of the run's devices ({})",
                s.model.device,
                devices[0]
            );
        }
        Ok(Some(ReplicaPlan {
            devices,
            model: s.model.clone(),
        }))
    }
}

/// What the pool knows about one replica.
struct ReplicaState {
    device: DeviceChoice,
    alive: bool,
    failed: Option<String>,
    pages: u64,
    batches: u64,
    busy_secs: f64,
    h2d_bytes: u64,
    h2d_secs: f64,
    stages: StageTimes,
}

pub struct ReplicaPool {
    work: Sender<Work>,
    results: Receiver<FromReplica>,
    /// Batches to hand out: new ones, and a failed replica's pages to redo.
    backlog: VecDeque<Work>,
    /// Pages handed out and not back yet.
    outstanding: usize,
    order: PageOrder,
    replicas: Vec<ReplicaState>,
    events: Sender<Event>,
    max_batch: usize,
    mode: TransferMode,
    started: Instant,
}

impl ReplicaPool {
    /// Starts one thread per device in `scope`; the first uses `model`, the others load theirs.
    pub fn start<'scope, 'env: 'scope>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        model: &'env ColQwen,
        plan: &ReplicaPlan,
        pre: &'env PreprocessConfig,
        max_batch: usize,
        events: Sender<Event>,
    ) -> Result<ReplicaPool> {
        // The run's model was loaded on this thread; its replica computes on another.
        model.device().synchronize()?;
        let max_batch = max_batch.max(1);
        // Room for one batch per replica besides those they hold: each takes its next batch
        // the moment it is free.
        let (work_tx, work_rx) = crossbeam_channel::bounded::<Work>(plan.devices.len());
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        for (i, &device) in plan.devices.iter().enumerate() {
            let replica = Replica {
                replica: i,
                model: if i == 0 {
                    ReplicaModel::Shared(model)
                } else {
                    ReplicaModel::Load(ModelSettings {
                        device,
                        ..plan.model.clone()
                    })
                },
                pre,
                max_batch,
                work: work_rx.clone(),
                results: results_tx.clone(),
                fail_after: fault_hook::fail_after(i),
            };
            std::thread::Builder::new()
                .name(format!("replica-{i}"))
                .spawn_scoped(scope, move || {
                    // A panic is reported (with the pages to redo) by the replica's own guard.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replica.run()));
                })?;
        }
        Ok(ReplicaPool {
            work: work_tx,
            results: results_rx,
            backlog: VecDeque::new(),
            outstanding: 0,
            order: PageOrder::default(),
            replicas: plan
                .devices
                .iter()
                .map(|&device| ReplicaState {
                    device,
                    alive: true,
                    failed: None,
                    pages: 0,
                    batches: 0,
                    busy_secs: 0.0,
                    h2d_bytes: 0,
                    h2d_secs: 0.0,
                    stages: StageTimes::default(),
                })
                .collect(),
            events,
            max_batch,
            mode: TransferMode::default(),
            started: Instant::now(),
        })
    }

    /// Hands out the backlog, taking results while the queue is full.
    fn dispatch(&mut self, out: &mut Vec<Done>) -> Result<()> {
        while let Some(w) = self.backlog.pop_front() {
            let received = {
                let mut sel = Select::new();
                let send = sel.send(&self.work);
                sel.recv(&self.results);
                let op = sel.select();
                if op.index() == send {
                    let n = w.pages.len();
                    match op.send(&self.work, w) {
                        Ok(()) => {
                            self.outstanding += n;
                            None
                        }
                        Err(back) => {
                            // Every replica has stopped; their notices say why.
                            self.backlog.push_front(back.into_inner());
                            Some(self.results.recv().ok())
                        }
                    }
                } else {
                    self.backlog.push_front(w);
                    Some(op.recv(&self.results).ok())
                }
            };
            match received {
                None => {}
                Some(Some(msg)) => self.on_message(msg, out)?,
                Some(None) => bail!("every model replica has stopped"),
            }
        }
        Ok(())
    }

    fn on_message(&mut self, msg: FromReplica, out: &mut Vec<Done>) -> Result<()> {
        match msg {
            FromReplica::Done {
                replica,
                done,
                busy_secs,
                stages,
            } => {
                let r = &mut self.replicas[replica];
                r.pages += done.pages.len() as u64;
                r.batches += 1;
                r.busy_secs += busy_secs;
                r.h2d_bytes += done.copy.h2d_bytes;
                r.h2d_secs += done.copy.h2d_secs;
                r.stages.accumulate(&stages);
                self.outstanding -= done.pages.len();
                out.extend(self.order.complete(done)?);
            }
            FromReplica::Failed {
                replica,
                error,
                unfinished,
            } => self.drop_replica(replica, error, unfinished)?,
        }
        Ok(())
    }

    /// Takes a failed replica out of the run and queues its unfinished pages for the others.
    fn drop_replica(
        &mut self,
        replica: usize,
        error: String,
        unfinished: Vec<RenderedPage>,
    ) -> Result<()> {
        let r = &mut self.replicas[replica];
        r.alive = false;
        r.failed = Some(error.clone());
        self.outstanding -= unfinished.len();
        let alive = self.replicas.iter().filter(|r| r.alive).count();
        if alive == 0 {
            bail!("every model replica failed; the last, replica {replica}: {error}");
        }
        let _ = self.events.send(Event::Notice {
            message: format!(
                "model replica {replica} ({}) dropped after {} batches: {error}; its {} unfinished \
                 pages go to the {alive} other replica(s)",
                self.replicas[replica].device,
                self.replicas[replica].batches,
                unfinished.len()
            ),
        });
        let mut pages = unfinished;
        while !pages.is_empty() {
            let rest = pages.split_off(pages.len().min(self.max_batch));
            self.backlog.push_back(Work {
                mode: self.mode,
                pages,
            });
            pages = rest;
        }
        Ok(())
    }

    fn drain_ready(&mut self, out: &mut Vec<Done>) -> Result<()> {
        while let Ok(msg) = self.results.try_recv() {
            self.on_message(msg, out)?;
        }
        Ok(())
    }
}

impl BatchRunner for ReplicaPool {
    fn submit(
        &mut self,
        mode: TransferMode,
        pages: Vec<RenderedPage>,
        clock: &mut StageClock,
    ) -> Result<Vec<Done>> {
        clock.switch(Stage::Replicas);
        self.mode = mode;
        self.order.hand_out(&pages);
        self.backlog.push_back(Work { mode, pages });
        let mut out = Vec::new();
        self.dispatch(&mut out)?;
        self.drain_ready(&mut out)?;
        // A replica that failed meanwhile left pages to hand out again.
        self.dispatch(&mut out)?;
        Ok(out)
    }

    fn flush(&mut self, clock: &mut StageClock) -> Result<Vec<Done>> {
        clock.switch(Stage::Replicas);
        let mut out = Vec::new();
        loop {
            self.dispatch(&mut out)?;
            if self.outstanding == 0 {
                return Ok(out);
            }
            let msg = self
                .results
                .recv()
                .map_err(|_| anyhow!("every model replica has stopped with pages unfinished"))?;
            self.on_message(msg, &mut out)?;
        }
    }

    fn replica_summaries(&self) -> Vec<ReplicaSummary> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        self.replicas
            .iter()
            .enumerate()
            .map(|(i, r)| ReplicaSummary {
                replica: i,
                device: r.device.to_string(),
                pages: r.pages,
                batches: r.batches,
                pages_per_sec: r.pages as f64 / wall,
                busy_secs: r.busy_secs,
                h2d_bytes_per_sec: if r.h2d_secs > 0.0 {
                    r.h2d_bytes as f64 / r.h2d_secs
                } else {
                    0.0
                },
                stages: r.stages,
                // The metrics recorder, which samples the cards, fills it in.
                gpu: None,
                failed: r.failed.clone(),
            })
            .collect()
    }
}
