//! The batch loop shared by ingest and A/B runs: takes rendered pages from the loader, forms
//! batches, embeds them, hands them to a sink, and reports progress, timings and metrics. Pause,
//! cancel and live settings take effect between batches.

use super::replicas::{ReplicaPlan, ReplicaPool};
use super::runner::{self, BatchRunner, Done};
use super::sink::PageSink;
use crate::control::RunControl;
use crate::event::{Event, FileReport, FileStatus, Progress, ReplicaSummary};
use crate::metrics::{BatchReport, MetricsRecorder};
use crate::settings::LiveSettings;
use crate::stage::{Stage, StageClock, StageTimes};
use anyhow::Result;
use crossbeam_channel::{RecvTimeoutError, Sender, TryRecvError};
use pagesight_loader::{Loader, LoaderEvent, RenderedPage};
use pagesight_model::colqwen::ColQwen;
use pagesight_model::PreprocessConfig;
use std::path::PathBuf;
use std::time::Duration;

/// How long a partial batch waits for more pages when the loader has gone quiet.
const PARTIAL_BATCH_WAIT: Duration = Duration::from_secs(1);

/// What the loop knows about one file being ingested.
pub struct FileTrack {
    pub hash: [u8; 32],
    pub path: PathBuf,
    /// First page this run renders (1-based); > 1 when resuming.
    pub first_page: u32,
    pub page_count: Option<u32>,
    pub received: u32,
    pub sunk: u32,
    pub loader_finished: bool,
    pub failed: bool,
    pub completed: bool,
    /// A page's rendering note (e.g. capped resolution) was reported; one per file is enough.
    pub noted: bool,
}

impl FileTrack {
    pub fn new(hash: [u8; 32], path: PathBuf, first_page: u32) -> Self {
        FileTrack {
            hash,
            path,
            first_page,
            page_count: None,
            received: 0,
            sunk: 0,
            loader_finished: false,
            failed: false,
            completed: false,
            noted: false,
        }
    }
    fn pages_to_do(&self) -> Option<u32> {
        if self.failed {
            // Only the pages it delivered before failing will be done (none if it never opened).
            return Some(self.received);
        }
        self.page_count
            .map(|n| n.saturating_sub(self.first_page - 1))
    }
}

#[derive(Debug, Default)]
pub struct PumpOutcome {
    pub pages: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub failures: Vec<FileReport>,
    pub cancelled: bool,
    /// Time that belongs to no batch (the final commit, time paused excluded).
    pub tail_stages: StageTimes,
    /// Each model replica, in a multi-device run.
    pub replicas: Vec<ReplicaSummary>,
}

/// The batch loop's running state, handed to `finish` as one piece.
struct LoopState {
    clock: StageClock,
    out: PumpOutcome,
    batch_no: u64,
}

pub struct Pump<'a> {
    pub model: &'a ColQwen,
    pub pre: &'a PreprocessConfig,
    pub control: &'a RunControl,
    pub events: &'a Sender<Event>,
    pub live: LiveSettings,
    pub max_pages: Option<u64>,
    /// A multi-device run's devices (None: `model` alone, through its own runner).
    pub replicas: Option<ReplicaPlan>,
}

impl Pump<'_> {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn status(&self, f: &FileTrack, status: FileStatus) {
        self.emit(Event::FileStatus(FileReport {
            path: f.path.clone(),
            status,
        }));
    }

    pub fn run(
        &mut self,
        loader: &Loader,
        files: &mut [FileTrack],
        sink: &mut dyn PageSink,
        recorder: &mut MetricsRecorder,
    ) -> Result<PumpOutcome> {
        self.live.transfer.check_supported(self.model.device())?;
        let (model, pre) = (self.model, self.pre);
        let batch_size = self.live.batch_size;
        match self.replicas.clone() {
            None => {
                let mut runner = runner::for_model(model, pre, batch_size)?;
                self.batches(&mut *runner, loader, files, sink, recorder)
            }
            Some(plan) => std::thread::scope(|scope| {
                let events = self.events.clone();
                let mut pool = ReplicaPool::start(scope, model, &plan, pre, batch_size, events)?;
                self.batches(&mut pool, loader, files, sink, recorder)
            }),
        }
    }

    /// The batch loop over `runner`.
    fn batches(
        &mut self,
        runner: &mut dyn BatchRunner,
        loader: &Loader,
        files: &mut [FileTrack],
        sink: &mut dyn PageSink,
        recorder: &mut MetricsRecorder,
    ) -> Result<PumpOutcome> {
        let mut st = LoopState {
            clock: StageClock::start(Stage::Render),
            out: PumpOutcome::default(),
            batch_no: 0,
        };
        let mut pending: Vec<RenderedPage> = Vec::new();
        let mut loader_done = false;
        loop {
            if self.control.is_cancelled() || self.max_pages.is_some_and(|m| st.out.pages >= m) {
                st.out.cancelled = self.control.is_cancelled();
                break;
            }
            if self.control.is_paused() {
                // Finish what is in flight, so a pause leaves nothing half done.
                let done = runner.flush(&mut st.clock)?;
                self.finish(done, runner, files, sink, recorder, &mut st)?;
                // Paused time belongs to no stage: close the clock, wait, start afresh.
                st.out.tail_stages.accumulate(&st.clock.take(Stage::Render));
                if !self.control.wait_while_paused() {
                    st.out.cancelled = true;
                    break;
                }
                st.clock = StageClock::start(Stage::Render);
            }
            if let Some(l) = self.control.take_live() {
                match l.transfer.check_supported(self.model.device()) {
                    Ok(()) => {
                        self.live = l.clone();
                        self.emit(Event::LiveSettingsApplied(l));
                    }
                    Err(e) => self.emit(Event::Error {
                        context: "transfer mode".into(),
                        message: format!("{e:#}"),
                        request_id: None,
                    }),
                }
            }
            let want = self.live.batch_size.max(1);
            // When pages already wait and nothing more comes for a while (e.g. another file's page
            // hangs until its timeout), the partial batch goes ahead rather than waiting with them.
            let mut partial_since: Option<std::time::Instant> = None;
            while !loader_done && pending.len() < want {
                let ev = match loader.events().try_recv() {
                    Ok(ev) => {
                        st.clock.switch(Stage::QueueWait);
                        ev
                    }
                    Err(TryRecvError::Empty) => {
                        st.clock.switch(Stage::Render);
                        match loader.events().recv_timeout(Duration::from_millis(100)) {
                            Ok(ev) => ev,
                            Err(RecvTimeoutError::Timeout) => {
                                if self.control.is_cancelled() || self.control.is_paused() {
                                    break;
                                }
                                if !pending.is_empty() {
                                    let since =
                                        *partial_since.get_or_insert_with(std::time::Instant::now);
                                    if since.elapsed() >= PARTIAL_BATCH_WAIT {
                                        break;
                                    }
                                }
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => {
                                loader_done = true;
                                break;
                            }
                        }
                    }
                    Err(TryRecvError::Disconnected) => {
                        loader_done = true;
                        break;
                    }
                };
                self.on_loader_event(ev, files, sink, &mut pending, &mut st.out)?;
            }
            if pending.is_empty() {
                if loader_done {
                    break;
                }
                continue;
            }
            let mut take = pending.len().min(want);
            if let Some(m) = self.max_pages {
                take = take.min((m - st.out.pages) as usize);
            }
            let batch: Vec<RenderedPage> = pending.drain(..take).collect();
            let done = runner.submit(self.live.transfer, batch, &mut st.clock)?;
            self.finish(done, runner, files, sink, recorder, &mut st)?;
        }
        let done = runner.flush(&mut st.clock)?;
        self.finish(done, runner, files, sink, recorder, &mut st)?;
        st.clock.switch(Stage::Index);
        if let Some(n) = sink.maybe_commit(true)? {
            self.emit(Event::Committed { pages_total: n });
        }
        st.out.tail_stages.accumulate(&st.clock.take(Stage::Index));
        recorder.record_stages(&st.out.tail_stages);
        if let Some(m) = recorder.maybe_emit(self.live.transfer, self.live.batch_size, true, || {
            runner.replica_summaries()
        }) {
            self.emit(Event::Metrics(m));
        }
        st.out.replicas = recorder.with_card_samples(runner.replica_summaries());
        self.emit(Event::Progress(progress(
            files,
            st.out.pages,
            recorder.elapsed(),
        )));
        Ok(st.out)
    }

    /// Sinks finished batches, completes files, commits when due, and reports timings.
    fn finish(
        &mut self,
        done: Vec<Done>,
        runner: &dyn BatchRunner,
        files: &mut [FileTrack],
        sink: &mut dyn PageSink,
        recorder: &mut MetricsRecorder,
        st: &mut LoopState,
    ) -> Result<()> {
        let LoopState {
            clock,
            out,
            batch_no,
        } = st;
        for d in done {
            if d.split && self.live.batch_size > 1 {
                self.live.batch_size = (self.live.batch_size / 2).max(1);
                self.emit(Event::Notice {
                    message: format!(
                        "GPU out of memory: batch size lowered to {}",
                        self.live.batch_size
                    ),
                });
                self.emit(Event::LiveSettingsApplied(self.live.clone()));
            }
            clock.switch(Stage::Index);
            for (p, e) in d.pages.iter().zip(&d.embeddings) {
                let f = &mut files[p.file_index];
                sink.page(&f.hash, p, e)?;
                f.sunk += 1;
                out.pages += 1;
            }
            for i in d
                .pages
                .iter()
                .map(|p| p.file_index)
                .collect::<std::collections::BTreeSet<_>>()
            {
                self.complete_if_ready(&mut files[i], sink, out)?;
                let f = &files[i];
                if !f.completed && !f.failed {
                    let total = f.page_count.unwrap_or(0);
                    self.status(
                        f,
                        FileStatus::InProgress {
                            pages_done: f.first_page - 1 + f.sunk,
                            pages_total: total,
                        },
                    );
                }
            }
            if let Some(n) = sink.maybe_commit(false)? {
                self.emit(Event::Committed { pages_total: n });
            }
            // Everything since the last report belongs to this batch (a second batch finished in
            // the same call reports no extra wall time).
            let stages = clock.take(Stage::Render);
            *batch_no += 1;
            let report = BatchReport {
                pages: d.pages.len(),
                stages,
                h2d_bytes: d.copy.h2d_bytes,
                h2d_secs: d.copy.h2d_secs,
                copy_critical_secs: d.copy.copy_critical_secs,
                gpu_busy_secs: d.gpu_busy_secs,
                gpu_span_ms: d.gpu_span_ms,
            };
            recorder.record(&report);
            self.emit(Event::BatchTimings {
                batch: *batch_no,
                pages: d.pages.len(),
                wall_secs: stages.total(),
                stages,
            });
            self.emit(Event::Progress(progress(
                files,
                out.pages,
                recorder.elapsed(),
            )));
            if let Some(m) =
                recorder.maybe_emit(self.live.transfer, self.live.batch_size, false, || {
                    runner.replica_summaries()
                })
            {
                self.emit(Event::Metrics(m));
            }
        }
        Ok(())
    }

    fn on_loader_event(
        &self,
        ev: LoaderEvent,
        files: &mut [FileTrack],
        sink: &mut dyn PageSink,
        pending: &mut Vec<RenderedPage>,
        out: &mut PumpOutcome,
    ) -> Result<()> {
        match ev {
            LoaderEvent::FileOpened {
                file_index,
                page_count,
            } => {
                let f = &mut files[file_index];
                f.page_count = Some(page_count);
                sink.begin_file(&f.hash, &f.path, page_count)?;
                self.status(
                    f,
                    FileStatus::InProgress {
                        pages_done: f.first_page - 1,
                        pages_total: page_count,
                    },
                );
            }
            LoaderEvent::Page(p) => {
                let f = &mut files[p.file_index];
                f.received += 1;
                if let (Some(note), false) = (&p.note, f.noted) {
                    f.noted = true;
                    self.emit(Event::Notice {
                        message: format!("{} page {}: {note}", f.path.display(), p.page),
                    });
                }
                pending.push(p);
            }
            LoaderEvent::FileFailed {
                file_index,
                page,
                reason,
            } => {
                let f = &mut files[file_index];
                if !f.failed {
                    f.failed = true;
                    out.files_failed += 1;
                    let status = FileStatus::Failed { page, reason };
                    out.failures.push(FileReport {
                        path: f.path.clone(),
                        status: status.clone(),
                    });
                    self.status(f, status);
                }
            }
            LoaderEvent::FileFinished { file_index } => {
                files[file_index].loader_finished = true;
                self.complete_if_ready(&mut files[file_index], sink, out)?;
            }
        }
        Ok(())
    }

    /// A file is complete once the loader finished it and every page it sent is in the sink.
    fn complete_if_ready(
        &self,
        f: &mut FileTrack,
        sink: &mut dyn PageSink,
        out: &mut PumpOutcome,
    ) -> Result<()> {
        if f.completed || f.failed || !f.loader_finished || f.sunk < f.received {
            return Ok(());
        }
        sink.finish_file(&f.hash)?;
        f.completed = true;
        out.files_done += 1;
        self.status(
            f,
            FileStatus::Done {
                pages: f.page_count.unwrap_or(f.sunk),
            },
        );
        Ok(())
    }
}

/// Pages done / total, with files whose page count is not known yet estimated at the mean of
/// the readable ones.
fn progress(files: &[FileTrack], pages_done: u64, elapsed: f64) -> Progress {
    let known: Vec<u32> = files.iter().filter_map(|f| f.pages_to_do()).collect();
    let unknown = files.len() - known.len();
    let known_sum: u64 = known.iter().map(|&n| n as u64).sum();
    let readable: Vec<u32> = files
        .iter()
        .filter(|f| !f.failed)
        .filter_map(|f| f.pages_to_do())
        .collect();
    let mean = if readable.is_empty() {
        1.0
    } else {
        readable.iter().map(|&n| n as f64).sum::<f64>() / readable.len() as f64
    };
    let pages_total = (known_sum as f64 + unknown as f64 * mean).round() as u64;
    let pages_per_sec = if elapsed > 0.0 {
        pages_done as f64 / elapsed
    } else {
        0.0
    };
    let remaining = pages_total.saturating_sub(pages_done) as f64;
    Progress {
        pages_done,
        pages_total: pages_total.max(pages_done),
        files_done: files.iter().filter(|f| f.completed || f.failed).count() as u64,
        files_total: files.len() as u64,
        pages_per_sec,
        eta_secs: (pages_per_sec > 0.0).then(|| remaining / pages_per_sec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_file_adds_only_its_delivered_pages_to_the_total() {
        let mut read = FileTrack::new([1; 32], "a.pdf".into(), 1);
        read.page_count = Some(5);
        read.received = 5;
        let mut unopened = FileTrack::new([2; 32], "broken.pdf".into(), 1);
        unopened.failed = true;
        let mut cut_short = FileTrack::new([3; 32], "cut.pdf".into(), 1);
        cut_short.page_count = Some(9);
        cut_short.received = 2;
        cut_short.failed = true;
        let waiting = FileTrack::new([4; 32], "later.pdf".into(), 1);
        let p = progress(&[read, unopened, cut_short, waiting], 7, 1.0);
        // 5 + 0 + 2 known, and the file not opened yet estimated like the readable one.
        assert_eq!(p.pages_total, 12);
        assert_eq!(p.files_done, 2);
    }
}
