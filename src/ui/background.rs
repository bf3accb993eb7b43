//! Work the UI hands to short-lived threads (dialogs, file reads and writes, launching a viewer) so
//! the UI thread never waits; each reports back as one `UiMsg` and asks for a repaint.

use crossbeam_channel::Sender;
use pagesight_engine::event::AbSideResult;
use std::path::PathBuf;

pub enum UiMsg {
    /// A folder chosen in the dialog; `None` when cancelled or no dialog could open.
    FolderPicked(Option<PathBuf>),
    /// A recorded-run file chosen in the dialog.
    RunFilePicked(Option<PathBuf>),
    RunsLoaded {
        path: PathBuf,
        result: Result<Vec<AbSideResult>, String>,
    },
    /// Something finished that the user should hear about (exports, viewer launches).
    Info(String),
    Failed {
        context: String,
        message: String,
    },
}

/// Sends messages back to the UI thread and wakes it.
#[derive(Clone)]
pub struct Background {
    tx: Sender<UiMsg>,
    ctx: egui::Context,
}

impl Background {
    pub fn new(tx: Sender<UiMsg>, ctx: egui::Context) -> Self {
        Background { tx, ctx }
    }

    /// Runs `job` on its own thread and delivers its message.
    pub fn spawn(&self, name: &str, job: impl FnOnce() -> UiMsg + Send + 'static) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ui-{name}"))
            .spawn(move || me.send(job()));
        if let Err(e) = spawned {
            self.send(UiMsg::Failed {
                context: name.to_owned(),
                message: format!("could not start a thread: {e}"),
            });
        }
    }

    pub fn send(&self, msg: UiMsg) {
        // The receiver lives as long as the app; a send error only happens while it shuts down.
        let _ = self.tx.send(msg);
        self.ctx.request_repaint();
    }

    pub fn pick_folder(&self) {
        self.spawn("pick-folder", || {
            UiMsg::FolderPicked(rfd::FileDialog::new().pick_folder())
        });
    }

    pub fn pick_run_file(&self) {
        self.spawn("pick-run", || {
            UiMsg::RunFilePicked(
                rfd::FileDialog::new()
                    .add_filter("pagesight runs", &["json", "jsonl"])
                    .pick_file(),
            )
        });
    }

    pub fn load_runs(&self, path: PathBuf) {
        self.spawn("load-runs", move || {
            let result = super::runs::load_runs(&path).map_err(|e| format!("{e:#}"));
            UiMsg::RunsLoaded { path, result }
        });
    }

    /// Writes `contents` to `path` atomically (a reader, or a crash, never meets half a file; an
    /// earlier export of the same name stays whole until the new one replaces it) and reports
    /// where it went.
    pub fn write_file(&self, what: &'static str, path: PathBuf, contents: Vec<u8>) {
        self.spawn("export", move || {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    pagesight_common::fs::write_atomic(&path, &contents)
                        .map_err(std::io::Error::other)
                });
            match written {
                Ok(()) => UiMsg::Info(format!("{what} written to {}", path.display())),
                Err(e) => UiMsg::Failed {
                    context: path.display().to_string(),
                    message: format!("could not write the {what}: {e}; pick a writable folder"),
                },
            }
        });
    }
}
