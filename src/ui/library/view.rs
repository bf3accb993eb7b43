//! The Library panel of the Corpus / Ingest view: every corpus with its pages, files, model,
//! index size, last ingest and watch state; which are searched and watched; add, re-ingest and
//! remove (after a confirmation, optionally deleting the index folder).

use super::corpus::{unix_now, Corpus};
use crate::ui::format;
use pagesight_engine::event::IndexStats;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub enum LibraryAction {
    /// Add the form's folder as a corpus.
    Add,
    /// Ingest this corpus again (new and changed files; vanished ones pruned).
    Reingest(usize),
    /// Forget this corpus; with `delete_index`, delete its index folder too.
    Remove { at: usize, delete_index: bool },
}

#[derive(Default)]
pub struct LibraryView {
    /// What each index holds, by index folder (`Event::Stats`).
    pub stats: HashMap<PathBuf, IndexStats>,
    /// Each watched folder's state in words, by folder ("watching", "paused: …").
    pub watch_state: HashMap<PathBuf, String>,
    /// The corpus whose removal waits for a confirmation, and whether to delete its index.
    confirm_remove: Option<(usize, bool)>,
}

impl LibraryView {
    pub fn stats_of(&self, corpus: &Corpus) -> Option<&IndexStats> {
        self.stats.get(&corpus.index)
    }

    /// `busy_index`: the index an ingest is writing (its corpus cannot be removed meanwhile).
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        library: &mut [Corpus],
        form_folder: &str,
        busy_index: Option<&Path>,
    ) -> Vec<LibraryAction> {
        let mut actions = Vec::new();
        ui.horizontal(|ui| {
            ui.heading("Library");
            let folder = form_folder.trim();
            let known = library.iter().any(|c| c.folder == Path::new(folder));
            if ui
                .add_enabled(
                    !folder.is_empty() && !known,
                    egui::Button::new("Add to library"),
                )
                .on_hover_text("add the folder chosen below as a corpus (Start ingest adds it too)")
                .clicked()
            {
                actions.push(LibraryAction::Add);
            }
        });
        if library.is_empty() {
            ui.weak("No corpus yet: choose a folder below and start an ingest.");
            return actions;
        }
        egui::Grid::new("library")
            .striped(true)
            .num_columns(9)
            .show(ui, |ui| {
                for h in [
                    "Corpus",
                    "Pages",
                    "Files",
                    "Model",
                    "Index size",
                    "Last ingest",
                    "Watch",
                    "",
                    "",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                let now = unix_now();
                for (at, c) in library.iter_mut().enumerate() {
                    let name = c.name();
                    ui.checkbox(&mut c.searched, name).on_hover_text(format!(
                        "{}\nindex: {}\nticked: searched from the Search view",
                        c.folder.display(),
                        c.index.display()
                    ));
                    match self.stats.get(&c.index) {
                        Some(s) => {
                            ui.label(s.pages.to_string());
                            ui.label(s.files.to_string());
                            ui.label(s.model.as_deref().unwrap_or("–"));
                            ui.label(format::bytes(s.bytes_on_disk));
                        }
                        None => {
                            for _ in 0..3 {
                                ui.weak("–");
                            }
                            ui.weak("not ingested yet");
                        }
                    }
                    ui.label(c.last_ingest.map_or("–".into(), |t| {
                        format!("{} ago", format::duration(now.saturating_sub(t) as f64))
                    }));
                    ui.horizontal(|ui| {
                        ui.checkbox(&mut c.watched, "watch");
                        if let Some(state) = self.watch_state.get(&c.folder).filter(|_| c.watched) {
                            ui.weak(state);
                        }
                    });
                    let busy = busy_index == Some(c.index.as_path());
                    if ui
                        .add_enabled(busy_index.is_none(), egui::Button::new("Re-ingest"))
                        .clicked()
                    {
                        actions.push(LibraryAction::Reingest(at));
                    }
                    if ui.add_enabled(!busy, egui::Button::new("Remove")).clicked() {
                        self.confirm_remove = Some((at, false));
                    }
                    ui.end_row();
                }
            });
        self.confirm(ui.ctx(), library, &mut actions);
        actions
    }

    fn confirm(
        &mut self,
        ctx: &egui::Context,
        library: &[Corpus],
        actions: &mut Vec<LibraryAction>,
    ) {
        let Some((at, mut delete_index)) = self.confirm_remove else {
            return;
        };
        let Some(c) = library.get(at) else {
            self.confirm_remove = None;
            return;
        };
        let size = self
            .stats
            .get(&c.index)
            .map(|s| format::bytes(s.bytes_on_disk));
        let mut decided = None;
        egui::Modal::new(egui::Id::unique("remove-corpus")).show(ctx, |ui| {
            ui.heading(format!("Remove {} from the library?", c.name()));
            ui.label("Its PDFs are not touched.");
            ui.checkbox(
                &mut delete_index,
                format!(
                    "Also delete its index folder {}{}",
                    c.index.display(),
                    size.map_or(String::new(), |s| format!(" ({s})"))
                ),
            );
            ui.horizontal(|ui| {
                if ui.button("Remove corpus").clicked() {
                    decided = Some(true);
                }
                if ui.button("Keep it").clicked() {
                    decided = Some(false);
                }
            });
        });
        self.confirm_remove = match decided {
            Some(true) => {
                actions.push(LibraryAction::Remove { at, delete_index });
                None
            }
            Some(false) => None,
            None => Some((at, delete_index)),
        };
    }
}
