//! The prefetching pipeline: N render worker processes render the pages of all files in
//! parallel; a coordinator thread puts the results back in order and hands them out through a
//! bounded channel (backpressure: when the consumer falls behind, rendering stops after
//! `prefetch` pages).
//!
//! Events come in one global order: for each file, `FileOpened`, its pages in page order, then
//! `FileFinished` or `FileFailed` (a file that cannot be opened gets only `FileFailed`); files in
//! job order. A worker that crashes or passes the per-page timeout is killed and replaced; its
//! file fails with the reason and the run goes on.

use super::pool::{describe_exit, WorkerMsg, WorkerProcess, WorkerSpawn};
use super::protocol::{RenderRequest, Reply, Request};
use crate::LoaderSettings;
use anyhow::{bail, Result};
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use pagesight_model::preprocess::PreprocessConfig;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One file to load.
#[derive(Clone, Debug, PartialEq)]
pub struct PageJobFile {
    /// The caller's id for the file; events carry it back.
    pub file_index: usize,
    pub path: PathBuf,
    /// First page to render, 1-based (> 1 when resuming a partly indexed file).
    pub first_page: u32,
}

impl PageJobFile {
    /// Every page of each file, numbered in order.
    pub fn whole_files<'a>(paths: impl IntoIterator<Item = &'a std::path::Path>) -> Vec<Self> {
        paths
            .into_iter()
            .enumerate()
            .map(|(i, p)| PageJobFile {
                file_index: i,
                path: p.to_path_buf(),
                first_page: 1,
            })
            .collect()
    }
}

/// A page at model resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedPage {
    pub file_index: usize,
    /// 1-based.
    pub page: u32,
    pub page_count: u32,
    /// Model resolution (multiples of 28).
    pub width: u32,
    pub height: u32,
    /// Packed 8-bit RGB, `height × width × 3`.
    pub rgb: Vec<u8>,
    /// The page's text layer.
    pub text: String,
    /// What the user should know about this page's rendering (e.g. capped resolution).
    pub note: Option<String>,
    /// Time in the worker: rendering (text extraction included), and resizing.
    pub render_secs: f64,
    pub resize_secs: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LoaderEvent {
    FileOpened {
        file_index: usize,
        page_count: u32,
    },
    Page(RenderedPage),
    /// `page` is 1-based when the failure belongs to one page. Pages before it were delivered.
    FileFailed {
        file_index: usize,
        page: Option<u32>,
        reason: String,
    },
    FileFinished {
        file_index: usize,
    },
}

/// Options beyond [`LoaderSettings`].
#[derive(Clone, Debug, Default)]
pub struct LoaderOptions {
    /// Extra environment for the worker processes (tests: fault injection).
    pub worker_env: Vec<(OsString, OsString)>,
}

/// A running pipeline. Dropping it stops the coordinator and kills the workers.
pub struct Loader {
    events: Receiver<LoaderEvent>,
    cancel: Arc<AtomicBool>,
    pids: Arc<Mutex<Vec<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    pub fn start(
        jobs: Vec<PageJobFile>,
        settings: &LoaderSettings,
        pre: &PreprocessConfig,
    ) -> Result<Loader> {
        Self::start_with(jobs, settings, pre, LoaderOptions::default())
    }

    pub fn start_with(
        jobs: Vec<PageJobFile>,
        settings: &LoaderSettings,
        pre: &PreprocessConfig,
        opts: LoaderOptions,
    ) -> Result<Loader> {
        if settings.workers == 0 {
            bail!("the loader needs at least one render worker (--workers)");
        }
        // Fail here, with the message that says how to get it, rather than once per file.
        pagesight_common::paths::find_pdfium()?;
        let spawn = WorkerSpawn::new(settings.worker_exe.as_deref(), opts.worker_env)?;
        let (msg_tx, msg_rx) = unbounded();
        let (ev_tx, ev_rx) = bounded(settings.prefetch.max(1));
        let cancel = Arc::new(AtomicBool::new(false));
        let pids = Arc::new(Mutex::new(vec![0; settings.workers]));
        let mut coord = Coordinator {
            files: jobs.into_iter().map(FileState::new).collect(),
            cursor: 0,
            slots: (0..settings.workers)
                .map(|_| Slot {
                    proc: None,
                    busy: None,
                })
                .collect(),
            spawn,
            next_generation: 0,
            msg_tx,
            msg_rx,
            out: ev_tx,
            cancel: cancel.clone(),
            pids: pids.clone(),
            timeout: Duration::from_secs_f32(settings.page_timeout_secs.max(0.001)),
            window: settings.workers * 2,
            request: RenderRequest {
                path: PathBuf::new(),
                page: 0,
                dpi: settings.dpi,
                max_render_pixels: settings.max_render_pixels,
                memory_cap_bytes: settings.worker_memory_cap_bytes(),
                factor: pre.factor(),
                min_pixels: pre.min_pixels,
                max_pixels: pre.max_pixels,
            },
        };
        // Workers are started by the coordinator thread: they die with the thread that started
        // them (PR_SET_PDEATHSIG), and that thread lives exactly as long as the pipeline.
        let (ready_tx, ready_rx) = bounded::<Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                let started = coord.start_workers();
                let ok = started.is_ok();
                let _ = ready_tx.send(started);
                if ok {
                    coord.run();
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Loader {
                events: ev_rx,
                cancel,
                pids,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                bail!("the loader thread stopped while starting render workers")
            }
        }
    }

    /// The event stream; it ends (disconnects) when every file is done or after `cancel`.
    pub fn events(&self) -> &Receiver<LoaderEvent> {
        &self.events
    }

    /// Next event, or `None` at the end.
    pub fn recv(&self) -> Option<LoaderEvent> {
        self.events.recv().ok()
    }

    /// Stops promptly: no new renders; workers are killed.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Process ids of the live workers (0 for a slot being restarted).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pids.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Task {
    Count { file: usize },
    Render { file: usize, page: u32 },
}

struct Slot {
    proc: Option<WorkerProcess>,
    busy: Option<(Task, Instant)>,
}

struct FileState {
    job: PageJobFile,
    page_count: Option<u32>,
    count_pending: bool,
    opened_sent: bool,
    next_dispatch: u32,
    next_emit: u32,
    done: BTreeMap<u32, RenderedPage>,
    /// The earliest failure: (page, reason); `None` page = the file could not be opened.
    failure: Option<(Option<u32>, String)>,
}

impl FileState {
    fn new(job: PageJobFile) -> Self {
        let first = job.first_page.max(1);
        FileState {
            job,
            page_count: None,
            count_pending: false,
            opened_sent: false,
            next_dispatch: first,
            next_emit: first,
            done: BTreeMap::new(),
            failure: None,
        }
    }

    fn fail(&mut self, page: Option<u32>, reason: String) {
        let earlier = match (&self.failure, page) {
            (None, _) => true,
            (Some((None, _)), _) => false,
            (Some((Some(_), _)), None) => true,
            (Some((Some(old), _)), Some(new)) => new < *old,
        };
        if earlier {
            self.failure = Some((page, reason));
        }
    }

    /// Pages still worth rendering stop at the first failed one.
    fn dispatch_limit(&self) -> u32 {
        let count = self.page_count.unwrap_or(0);
        match &self.failure {
            Some((None, _)) => 0,
            Some((Some(p), _)) => count.min(p - 1),
            None => count,
        }
    }
}

struct Coordinator {
    files: Vec<FileState>,
    /// Index of the file whose events go out next.
    cursor: usize,
    slots: Vec<Slot>,
    spawn: WorkerSpawn,
    next_generation: u64,
    msg_tx: Sender<WorkerMsg>,
    msg_rx: Receiver<WorkerMsg>,
    out: Sender<LoaderEvent>,
    cancel: Arc<AtomicBool>,
    pids: Arc<Mutex<Vec<u32>>>,
    timeout: Duration,
    /// Most pages rendered or rendering ahead of the next page to go out (bounds memory).
    window: usize,
    /// Render parameters; path and page are filled per task.
    request: RenderRequest,
}

/// How far ahead (in files) page counts are fetched.
const COUNT_LOOKAHEAD: usize = 4;

impl Coordinator {
    fn start_workers(&mut self) -> Result<()> {
        for s in 0..self.slots.len() {
            self.spawn_worker(s)?;
        }
        Ok(())
    }

    fn run(&mut self) {
        while !self.cancelled() {
            if !self.emit_ready() {
                break;
            }
            if self.cursor >= self.files.len() {
                break;
            }
            self.dispatch();
            let wait = self
                .next_deadline()
                .map_or(Duration::from_millis(100), |d| {
                    d.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100))
                });
            match self.msg_rx.recv_timeout(wait) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => self.expire(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        for slot in &mut self.slots {
            if let Some(p) = slot.proc.take() {
                p.kill();
            }
        }
        if let Ok(mut p) = self.pids.lock() {
            p.iter_mut().for_each(|x| *x = 0);
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Sends what is ready, in order. Returns false when the consumer is gone or we are cancelled.
    fn emit_ready(&mut self) -> bool {
        while self.cursor < self.files.len() {
            let Some(ev) = self.next_event() else {
                return true;
            };
            if !self.send(ev) {
                return false;
            }
        }
        true
    }

    /// The next event of the file at the cursor, if it is ready; moves the cursor past a file
    /// whose last event this is.
    fn next_event(&mut self) -> Option<LoaderEvent> {
        let f = &mut self.files[self.cursor];
        let file_index = f.job.file_index;
        let (ev, last) = if let Some((None, reason)) = &f.failure {
            (
                LoaderEvent::FileFailed {
                    file_index,
                    page: None,
                    reason: reason.clone(),
                },
                true,
            )
        } else {
            let count = f.page_count?;
            if !f.opened_sent {
                f.opened_sent = true;
                (
                    LoaderEvent::FileOpened {
                        file_index,
                        page_count: count,
                    },
                    false,
                )
            } else if let Some(page) = f.done.remove(&f.next_emit) {
                f.next_emit += 1;
                (LoaderEvent::Page(page), false)
            } else if matches!(&f.failure, Some((Some(p), _)) if *p == f.next_emit) {
                let (page, reason) = f.failure.take().expect("checked above");
                (
                    LoaderEvent::FileFailed {
                        file_index,
                        page,
                        reason,
                    },
                    true,
                )
            } else if f.next_emit > count {
                (LoaderEvent::FileFinished { file_index }, true)
            } else {
                return None;
            }
        };
        if last {
            // Late replies for pages past a failure are dropped with it.
            f.done.clear();
            self.cursor += 1;
        }
        Some(ev)
    }

    fn send(&mut self, mut ev: LoaderEvent) -> bool {
        loop {
            if self.cancelled() {
                return false;
            }
            match self.out.send_timeout(ev, Duration::from_millis(50)) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) => ev = back,
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }

    /// Pages rendered or in flight that have not gone out yet.
    fn outstanding_pages(&self) -> usize {
        let in_flight = self
            .slots
            .iter()
            .filter(|s| matches!(s.busy, Some((Task::Render { .. }, _))))
            .count();
        in_flight
            + self.files[self.cursor..]
                .iter()
                .map(|f| f.done.len())
                .sum::<usize>()
    }

    /// The next thing for an idle worker: pages in global order, within the window; page
    /// counts of the next few files meanwhile, so their pages can follow without a gap.
    fn next_task(&self) -> Option<Task> {
        let pages_ok = self.outstanding_pages() < self.window;
        // Once a file's pages cannot all be dispatched yet, later files get counts only, so the
        // window is spent on the pages that go out first.
        let mut pages_blocked = !pages_ok;
        let mut looked_ahead = 0;
        for (i, f) in self.files.iter().enumerate().skip(self.cursor) {
            if f.failure.as_ref().is_some_and(|(p, _)| p.is_none()) {
                continue;
            }
            match f.page_count {
                None if f.count_pending => pages_blocked = true,
                None => return Some(Task::Count { file: i }),
                Some(_) if f.next_dispatch <= f.dispatch_limit() => {
                    if !pages_blocked {
                        return Some(Task::Render {
                            file: i,
                            page: f.next_dispatch,
                        });
                    }
                }
                Some(_) => {}
            }
            looked_ahead += 1;
            if looked_ahead > COUNT_LOOKAHEAD {
                return None;
            }
        }
        None
    }

    fn dispatch(&mut self) {
        for s in 0..self.slots.len() {
            if self.slots[s].busy.is_some() {
                continue;
            }
            let Some(task) = self.next_task() else { return };
            if self.slots[s].proc.is_none() && !self.respawn(s) {
                continue;
            }
            let req = match task {
                Task::Count { file } => Request::Count {
                    path: self.files[file].job.path.clone(),
                },
                Task::Render { file, page } => Request::Render(RenderRequest {
                    path: self.files[file].job.path.clone(),
                    page: page - 1,
                    ..self.request.clone()
                }),
            };
            let proc = self.slots[s].proc.as_mut().expect("worker present");
            if let Err(e) = proc.send(&req) {
                // Its stdin is gone: it died while idle. Replace it and try the task again later.
                tracing::warn!("render worker {s}: {e:#}; restarting it");
                if let Some(p) = self.slots[s].proc.take() {
                    p.kill();
                }
                continue;
            }
            match task {
                Task::Count { file } => self.files[file].count_pending = true,
                Task::Render { file, .. } => self.files[file].next_dispatch += 1,
            }
            self.slots[s].busy = Some((task, Instant::now()));
        }
        if self.slots.iter().all(|s| s.proc.is_none()) {
            // No worker can be started: fail what is left rather than wait forever.
            for f in &mut self.files[self.cursor..] {
                f.fail(None, "no render worker could be started".into());
            }
        }
    }

    fn spawn_worker(&mut self, s: usize) -> Result<()> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let p = WorkerProcess::spawn(&self.spawn, s, generation, self.msg_tx.clone())?;
        if let Ok(mut pids) = self.pids.lock() {
            pids[s] = p.pid();
        }
        self.slots[s].proc = Some(p);
        Ok(())
    }

    fn respawn(&mut self, s: usize) -> bool {
        match self.spawn_worker(s) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot restart render worker {s}: {e:#}");
                false
            }
        }
    }

    fn handle(&mut self, msg: WorkerMsg) {
        let (slot, generation) = match &msg {
            WorkerMsg::Reply {
                slot, generation, ..
            }
            | WorkerMsg::Gone {
                slot, generation, ..
            } => (*slot, *generation),
        };
        let current = self.slots[slot].proc.as_ref().map(|p| p.generation);
        if current != Some(generation) {
            return; // from a worker already replaced
        }
        let task = self.slots[slot].busy.take();
        match msg {
            WorkerMsg::Reply { reply, .. } => match task {
                Some((task, _)) => self.complete(task, reply),
                None => tracing::warn!("render worker {slot} replied without a request"),
            },
            WorkerMsg::Gone { why, .. } => {
                let status = self.slots[slot].proc.take().and_then(|p| p.reap());
                if let Ok(mut pids) = self.pids.lock() {
                    pids[slot] = 0;
                }
                if let Some((task, _)) = task {
                    // The usual causes, so the user knows what to try: a PDF that crashes PDFium,
                    // or one that needs more than the worker's memory cap.
                    let cap_mb = self.request.memory_cap_bytes >> 20;
                    let how = format!(
                        " (worker {why}: {}); the page is damaged in a way that crashes PDFium, \
                         or needs more than the {cap_mb} MB of memory a render worker may use",
                        describe_exit(status)
                    );
                    self.fail_task(task, "render worker crashed", &how);
                }
            }
        }
    }

    fn complete(&mut self, task: Task, reply: Reply) {
        match (task, reply) {
            (Task::Count { file }, Reply::Count { pages }) => {
                let f = &mut self.files[file];
                f.count_pending = false;
                if pages == 0 {
                    f.fail(None, "the PDF has no pages".into());
                } else {
                    f.page_count = Some(pages);
                }
            }
            (Task::Count { file }, Reply::Error { message }) => {
                self.files[file].count_pending = false;
                self.files[file].fail(None, message);
            }
            (Task::Render { file, page }, Reply::Page(p)) => {
                let f = &mut self.files[file];
                if file >= self.cursor
                    && f.failure
                        .as_ref()
                        .is_none_or(|(fp, _)| fp.is_some_and(|fp| page < fp))
                {
                    f.done.insert(
                        page,
                        RenderedPage {
                            file_index: f.job.file_index,
                            page,
                            page_count: f.page_count.unwrap_or(0),
                            width: p.width,
                            height: p.height,
                            rgb: p.rgb,
                            text: p.text,
                            note: p.note,
                            render_secs: p.render_secs,
                            resize_secs: p.resize_secs,
                        },
                    );
                }
            }
            (Task::Render { file, page }, Reply::Error { message }) => {
                self.files[file].fail(Some(page), message);
            }
            (task, other) => {
                let detail = format!(" ({})", reply_kind(&other));
                self.fail_task(task, "render worker sent an unexpected reply", &detail)
            }
        }
    }

    /// Marks the file of `task` failed because its worker died or hung: "`what` on page 3`detail`".
    fn fail_task(&mut self, task: Task, what: &str, detail: &str) {
        match task {
            Task::Count { file } => {
                self.files[file].count_pending = false;
                self.files[file].fail(None, format!("{what} while opening the file{detail}"));
            }
            Task::Render { file, page } => {
                self.files[file].fail(Some(page), format!("{what} on page {page}{detail}"))
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.busy.map(|(_, t)| t + self.timeout))
            .min()
    }

    /// Kills workers past the per-page timeout (after taking any reply already waiting).
    fn expire(&mut self) {
        while let Ok(msg) = self.msg_rx.try_recv() {
            self.handle(msg);
        }
        let now = Instant::now();
        for s in 0..self.slots.len() {
            let Some((task, started)) = self.slots[s].busy else {
                continue;
            };
            if now < started + self.timeout {
                continue;
            }
            self.slots[s].busy = None;
            if let Some(p) = self.slots[s].proc.take() {
                p.kill();
            }
            if let Ok(mut pids) = self.pids.lock() {
                pids[s] = 0;
            }
            let what = format!("render timed out after {} s", self.timeout.as_secs_f32());
            self.fail_task(task, &what, " (worker killed)");
        }
    }
}

fn reply_kind(r: &Reply) -> &'static str {
    match r {
        Reply::Count { .. } => "a page count",
        Reply::Page(_) => "a page",
        Reply::Thumbnail { .. } => "a thumbnail",
        Reply::Error { .. } => "an error",
    }
}
