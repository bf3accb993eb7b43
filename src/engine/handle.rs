//! The engine thread: receives `Command`s, runs jobs on threads it owns, and sends `Event`s.
//! Long work (an ingest, an A/B run, a search, a thumbnail) never runs on the engine thread
//! itself, so control commands (pause, cancel, a new transfer mode) are always answered at once.

use super::command::Command;
use super::control::RunControl;
use super::event::Event;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The caller's end: send commands, drain events (the GUI with `try_recv` each frame).
pub struct EngineHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

/// How the engine starts its helper processes.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The executable of the thumbnail render worker (`<exe> __render-worker`); None: this one.
    /// Ingests name theirs in their loader settings.
    pub worker_exe: Option<PathBuf>,
    /// Extra environment for the thumbnail worker (tests: the workers' fault hooks).
    pub worker_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// How long one thumbnail may take before its worker is killed as hung.
    pub thumbnail_timeout: std::time::Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            worker_exe: None,
            worker_env: Vec::new(),
            thumbnail_timeout: pagesight_loader::DEFAULT_THUMBNAIL_TIMEOUT,
        }
    }
}

impl EngineHandle {
    pub fn spawn() -> EngineHandle {
        Self::spawn_with(EngineOptions::default())
    }

    pub fn spawn_with(options: EngineOptions) -> EngineHandle {
        let (cmd_tx, cmd_rx) = unbounded();
        let (ev_tx, ev_rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("pagesight-engine".into())
            .spawn(move || Engine::new(ev_tx, options).run(cmd_rx))
            .expect("spawn engine thread");
        EngineHandle {
            commands: cmd_tx,
            events: ev_rx,
            thread: Some(thread),
        }
    }

    pub fn send(&self, c: Command) {
        // The engine thread only ends on Shutdown or when this handle drops.
        let _ = self.commands.send(c);
    }

    /// Cancels running work and waits for the engine thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A job running on its own thread, with the control block the engine uses to steer it.
struct Job {
    control: Arc<RunControl>,
    /// Set before the final event is sent.
    ended: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Job {
    /// Runs `f` on its own thread; `f` returns the event that reports the run's end, which is
    /// sent only after the job has marked itself ended: a client that sees that event and starts
    /// the next run at once finds the run slot free.
    fn spawn(
        name: &str,
        events: Sender<Event>,
        f: impl FnOnce(Arc<RunControl>, Sender<Event>) -> Event + Send + 'static,
    ) -> Job {
        let control = Arc::new(RunControl::new());
        let ended = Arc::new(AtomicBool::new(false));
        let (c, e) = (control.clone(), ended.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let last = f(c, events.clone());
                e.store(true, Ordering::SeqCst);
                let _ = events.send(last);
            })
            .expect("spawn job");
        Job {
            control,
            ended,
            thread,
        }
    }
    fn running(&self) -> bool {
        !self.ended.load(Ordering::SeqCst) && !self.thread.is_finished()
    }
}

/// The thumbnail worker's renderer; a worker executable that cannot be found is reported now
/// and again with each thumbnail (the current executable is tried).
fn thumbnail_renderer(
    options: &EngineOptions,
    events: &Sender<Event>,
) -> pagesight_loader::ThumbnailRenderer {
    let spawn = pagesight_loader::pool::WorkerSpawn::new(
        options.worker_exe.as_deref(),
        options.worker_env.clone(),
    )
    .unwrap_or_else(|e| {
        let _ = events.send(Event::Notice {
            message: format!("thumbnails may not render: {e:#}"),
        });
        pagesight_loader::pool::WorkerSpawn {
            exe: PathBuf::from("pagesight"),
            env: options.worker_env.clone(),
        }
    });
    pagesight_loader::ThumbnailRenderer::new(spawn, options.thumbnail_timeout)
}

struct Engine {
    events: Sender<Event>,
    /// The one ingest or A/B run (they share the model and the device).
    run: Option<Job>,
    searcher: super::search::SearchService,
    /// The loaded model the ingest jobs and the searches pass on to each other.
    shelf: super::model_shelf::ModelShelf,
    /// Index statistics, from the readers the searches share: never on this thread.
    stats: Sender<PathBuf>,
    thumbnails: super::thumbnail::ThumbnailService,
    /// The model download (one at a time) and the on-disk checks.
    downloads: super::download::Downloads,
}

impl Engine {
    fn new(events: Sender<Event>, options: EngineOptions) -> Engine {
        let indexes = super::open_indexes::OpenIndexes::default();
        let stats_from = indexes.clone();
        let shelf = super::model_shelf::ModelShelf::default();
        Engine {
            searcher: super::search::SearchService::spawn(events.clone(), indexes, shelf.clone()),
            shelf,
            stats: super::service::spawn(
                "pagesight-stats",
                events.clone(),
                move |index: PathBuf| match stats_from.stats(&index) {
                    Ok(s) => Event::Stats(super::search::stats_event(&index, s)),
                    Err(e) => Event::Error {
                        context: format!("index {}", index.display()),
                        message: format!("{e:#}"),
                        request_id: None,
                    },
                },
            ),
            thumbnails: super::thumbnail::ThumbnailService::spawn(
                events.clone(),
                thumbnail_renderer(&options, &events),
            ),
            events,
            run: None,
            downloads: super::download::Downloads::default(),
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn busy_error(&self, what: &str) {
        self.emit(Event::Error {
            context: what.into(),
            message:
                "an ingest or comparison is already running; cancel it or wait for it to finish"
                    .into(),
            request_id: None,
        });
    }

    fn run(mut self, commands: Receiver<Command>) {
        while let Ok(cmd) = commands.recv() {
            if let Some(j) = &self.run {
                if !j.running() {
                    let j = self.run.take().unwrap();
                    let _ = j.thread.join();
                }
            }
            match cmd {
                Command::StartIngest {
                    folder,
                    index,
                    settings,
                } => {
                    if self.run.is_some() {
                        self.busy_error("ingest");
                        continue;
                    }
                    let shelf = self.shelf.clone();
                    self.run = Some(Job::spawn(
                        "pagesight-ingest",
                        self.events.clone(),
                        move |control, events| {
                            super::ingest::run_to_end(
                                &folder, &index, &settings, &shelf, &control, &events,
                            )
                        },
                    ));
                }
                Command::AbCompare {
                    folder,
                    pages,
                    a,
                    b,
                } => {
                    if self.run.is_some() {
                        self.busy_error("A/B comparison");
                        continue;
                    }
                    self.run = Some(Job::spawn(
                        "pagesight-ab",
                        self.events.clone(),
                        move |control, events| {
                            super::ab::run_to_end(&folder, pages, &a, &b, &control, &events)
                        },
                    ));
                }
                Command::Pause => {
                    if let Some(j) = &self.run {
                        j.control.pause();
                        self.emit(Event::Paused);
                    }
                }
                Command::Resume => {
                    if let Some(j) = &self.run {
                        j.control.resume();
                        self.emit(Event::Resumed);
                    }
                }
                Command::Cancel => {
                    if let Some(j) = &self.run {
                        j.control.cancel();
                    }
                }
                Command::UpdateLive(s) => {
                    if let Some(j) = &self.run {
                        j.control.set_live(s);
                    }
                }
                Command::Search(req) => self.searcher.submit(req),
                Command::Thumbnail {
                    id,
                    file,
                    page,
                    max_side,
                } => self.thumbnails.submit(id, file, page, max_side),
                Command::Stats { index } => {
                    let _ = self.stats.send(index);
                }
                Command::DeviceInfo => self.emit(Event::Device(super::device_info::describe(
                    super::DeviceChoice::Auto,
                ))),
                Command::CheckModel { model, adapter } => {
                    self.downloads.check(&self.events, model, adapter)
                }
                Command::DownloadModel { model, adapter } => {
                    self.downloads.start(&self.events, model, adapter)
                }
                Command::CancelDownload => self.downloads.cancel(),
                Command::Shutdown => break,
            }
        }
        if let Some(j) = self.run.take() {
            j.control.cancel();
            let _ = j.thread.join();
        }
    }
}
