//! The Search view: query box (Enter searches) with its history, mode, a grid of page thumbnails
//! with score, file, page and text snippet (the query's terms highlighted); filters by corpus,
//! folder and file; export of the shown list as Markdown or CSV. Arrows move the selection, Enter
//! or a click opens the large view with the similarity heatmap, Esc closes it; Ctrl+C (or a card's
//! menu) copies the page's reference, `file, p. N`.

mod card;
mod filter;
mod large_view;
mod result_set;
mod snippet_text;
mod timing;

use super::format;
use super::settings::UiSettings;
use super::thumbnails::{ThumbState, Thumbnails};
use crate::export::results::{self, Format, ResultList};
use card::{card, grid_key, hit_menu};
use filter::ResultFilter;
use pagesight_engine::event::SearchHit;
use pagesight_engine::SearchMode;
pub use result_set::{Asked, ResultSet, SearchAction};
use std::collections::HashMap;
pub use timing::time_by_step;

pub const GRID_THUMB_SIDE: u32 = 256;
pub const LARGE_THUMB_SIDE: u32 = 1280;
const CARD_WIDTH: f32 = 190.0;

#[derive(Default)]
pub struct SearchView {
    pub query: String,
    /// Id of the search in flight.
    pub pending: Option<u64>,
    /// What the search in flight asked.
    pub asked: Asked,
    pub results: Option<ResultSet>,
    pub selected: Option<usize>,
    pub large_open: bool,
    pub error: Option<String>,
    /// Overlay textures per hit rank of the current results.
    overlays: HashMap<usize, Result<egui::TextureHandle, String>>,
    columns: usize,
    pub filter: ResultFilter,
}

impl SearchView {
    pub fn on_results(&mut self, set: ResultSet) {
        if self.pending != Some(set.id) {
            return; // an answer to an older question
        }
        self.pending = None;
        self.error = None;
        self.large_open = false;
        self.overlays.clear();
        self.results = Some(set);
        self.selected = self.visible().first().copied();
    }

    /// Positions (in the result list) of the results the filter shows.
    pub fn visible(&self) -> Vec<usize> {
        self.results
            .as_ref()
            .map_or(Vec::new(), |r| self.filter.visible(&r.corpora, &r.hits))
    }

    /// The shown results rendered for export.
    fn export(&self, format: Format) -> Option<String> {
        let r = self.results.as_ref()?;
        let list = ResultList {
            query: &r.query,
            mode: r.asked.mode,
            hits: self.visible().into_iter().map(|i| &r.hits[i]).collect(),
        };
        Some(results::render(format, &[list]))
    }

    /// An engine error; returns whether it answered our search.
    pub fn on_error(&mut self, request_id: u64, message: &str) -> bool {
        if self.pending == Some(request_id) {
            self.pending = None;
            self.error = Some(message.to_owned());
            return true;
        }
        false
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut UiSettings,
        thumbs: &mut Thumbnails,
        index_ready: Result<(), &str>,
    ) -> Vec<SearchAction> {
        let mut actions = Vec::new();
        let mut query_focused = false;
        ui.horizontal(|ui| {
            let label = ui.label("Query");
            let edit = ui
                .add_enabled(
                    index_ready.is_ok(),
                    egui::TextEdit::singleline(&mut self.query)
                        .hint_text("what are you looking for? (Enter to search)")
                        .desired_width(480.0),
                )
                .labelled_by(label.id);
            // Losing focus this frame counts: its Enter searched and must not also open a result.
            query_focused = edit.has_focus() || edit.lost_focus();
            let submitted = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let clicked = ui
                .add_enabled(index_ready.is_ok(), egui::Button::new("Search"))
                .clicked();
            if (submitted || clicked) && !self.query.trim().is_empty() {
                actions.push(SearchAction::Search(self.query.trim().to_owned()));
            }
            if let Some(q) = history_menu(ui, &settings.query_history, index_ready.is_ok()) {
                self.query = q.clone();
                actions.push(SearchAction::Search(q));
            }
            for m in SearchMode::ALL {
                ui.selectable_value(&mut settings.search_mode, m, m.name());
            }
            ui.checkbox(&mut settings.fast_search, "fast")
                .on_hover_text(
                    "Visual ranking through a sign-bit prefilter over every page, then exact MaxSim on \
                     the best candidates (max(400, 1 % of the pages)): several times faster on big \
                     indexes, recall@10 1.000 in our benchmarks at 10k and 100k pages",
                );
            ui.add(
                egui::DragValue::new(&mut settings.top_k)
                    .range(1..=100)
                    .prefix("top "),
            );
            ui.add(
                egui::TextEdit::singleline(&mut settings.search_backend)
                    .hint_text("local")
                    .desired_width(200.0),
            )
            .on_hover_text(
                "Where visual ranking runs: empty for the local index, or a Qdrant collection the \
                 index was exported to (pagesight export qdrant), qdrant://host:port/collection",
            );
        });
        if let Err(why) = index_ready {
            ui.label(egui::RichText::new(why).color(ui.visuals().warn_fg_color));
        }
        if self.pending.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Searching…");
            });
        }
        if let Some(e) = &self.error {
            ui.label(
                egui::RichText::new(format!("Search failed: {e}"))
                    .color(ui.visuals().error_fg_color),
            );
        }
        let Some(results) = &self.results else {
            if index_ready.is_ok() && self.pending.is_none() && self.error.is_none() {
                ui.weak("Type what you are looking for and press Enter: the best-matching pages appear here.");
            }
            return actions;
        };
        ui.label(format!(
            "{} results for “{}” in {:.0} ms",
            results.hits.len(),
            results.query,
            results.elapsed_ms
        ))
        .on_hover_text(time_by_step(&results.timings));
        if !results.scorer.is_empty() {
            ui.weak(format!("ranked by: {}", results.scorer));
        }
        if let Some(note) = &results.note {
            ui.label(
                egui::RichText::new(note)
                    .italics()
                    .color(ui.visuals().warn_fg_color),
            );
        }
        self.filter_row(ui, &mut actions);
        ui.separator();

        let visible = self.visible();
        if self.selected.is_some_and(|s| !visible.contains(&s)) {
            self.selected = visible.first().copied();
            self.large_open &= self.selected.is_some();
        }
        if !query_focused && !self.large_open {
            self.handle_grid_keys(ui, &visible, &mut actions);
        }
        self.columns = ((ui.available_width() / (CARD_WIDTH + 8.0)).floor() as usize).max(1);
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let Some(results) = &self.results else { return };
                let several_corpora = results.corpora.iter().any(|c| c != &results.corpora[0]);
                // One grid per group of comparable scores, each under its model's name when
                // corpora made with another model were searched too.
                let mut by_group: Vec<Vec<usize>> = vec![Vec::new(); results.groups.len().max(1)];
                for &i in &visible {
                    by_group[results.group_of(i)].push(i);
                }
                for (g, members) in by_group.iter().enumerate() {
                    if results.groups.len() > 1 && !members.is_empty() {
                        let model = &results.groups[g].model;
                        ui.strong(if g == 0 {
                            format!("Corpora made with {model}")
                        } else {
                            format!("Made with another model, {model}: searched with it, scores not comparable with the list above")
                        });
                    }
                    egui::Grid::new(("results-grid", g))
                        .spacing([8.0, 8.0])
                        .show(ui, |ui| {
                            for (shown, &i) in members.iter().enumerate() {
                                let hit = &results.hits[i];
                                let key = grid_key(hit);
                                if matches!(thumbs.get(&key), ThumbState::Missing) {
                                    actions.push(SearchAction::Thumbnail(key.clone()));
                                }
                                let corpus = several_corpora.then(|| results.corpora[i].as_str());
                                let resp =
                                    card(ui, i, hit, corpus, thumbs, &key, self.selected == Some(i));
                                if resp.clicked() {
                                    clicked = Some(i);
                                }
                                resp.context_menu(|ui| hit_menu(ui, hit, &mut actions));
                                if (shown + 1) % self.columns == 0 {
                                    ui.end_row();
                                }
                            }
                        });
                }
            });
        if let Some(i) = clicked {
            self.selected = Some(i);
            self.large_open = true;
        }
        if self.large_open {
            self.show_large(ui.ctx(), settings, thumbs, &visible, &mut actions);
        }
        actions
    }

    /// Filters by corpus, folder and file, how many results they show, and the export buttons.
    fn filter_row(&mut self, ui: &mut egui::Ui, actions: &mut Vec<SearchAction>) {
        let Some(results) = &self.results else { return };
        let c = filter::choices(&self.filter, &results.corpora, &results.hits);
        let (shown, total) = (self.visible().len(), results.hits.len());
        let filter = &mut self.filter;
        let mut export = None;
        ui.horizontal_wrapped(|ui| {
            filter_combo(ui, "Corpus", &mut filter.corpus, &c.corpora, |c| c.clone());
            filter_combo(ui, "Folder", &mut filter.folder, &c.folders, |f| {
                f.display().to_string()
            });
            filter_combo(ui, "File", &mut filter.file, &c.files, |f| {
                format::file_name(f)
            });
            if filter.is_active() {
                if ui.button("Clear filters").clicked() {
                    *filter = ResultFilter::default();
                }
                ui.label(format!("showing {shown} of {total}"));
            }
            ui.separator();
            for format in [Format::Markdown, Format::Csv] {
                let button = egui::Button::new(format!("Export {}", format.name()));
                if ui
                    .add_enabled(shown > 0, button)
                    .on_hover_text("the results shown, with their text snippets")
                    .clicked()
                {
                    export = Some(format);
                }
            }
        });
        if let Some(text) = export.and_then(|f| Some((f, self.export(f)?))) {
            actions.push(SearchAction::Export(text.0, text.1));
        }
    }

    fn handle_grid_keys(
        &mut self,
        ui: &egui::Ui,
        visible: &[usize],
        actions: &mut Vec<SearchAction>,
    ) {
        let n = visible.len();
        if n == 0 {
            return;
        }
        let cols = self.columns.max(1) as isize;
        let step = ui.input(|i| {
            if i.key_pressed(egui::Key::ArrowRight) {
                1
            } else if i.key_pressed(egui::Key::ArrowLeft) {
                -1
            } else if i.key_pressed(egui::Key::ArrowDown) {
                cols
            } else if i.key_pressed(egui::Key::ArrowUp) {
                -cols
            } else {
                0
            }
        });
        if step != 0 {
            self.selected = Some(step_within(visible, self.selected, step));
        }
        if self.selected.is_some() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
            self.large_open = true;
        }
        // Ctrl+C (Cmd+C): a desktop sends Copy, a bare key event carries its own modifiers.
        let copy = ui.input(|i| {
            i.events.iter().any(|e| match e {
                egui::Event::Copy => true,
                egui::Event::Key {
                    key: egui::Key::C,
                    pressed: true,
                    modifiers,
                    ..
                } => modifiers.command,
                _ => false,
            })
        });
        if let (true, Some(hit)) = (copy, self.selected_hit()) {
            actions.push(SearchAction::CopyReference(results::reference(hit)));
        }
    }

    fn selected_hit(&self) -> Option<&SearchHit> {
        self.results.as_ref()?.hits.get(self.selected?)
    }
}

/// The result `step` places away from `current` among the `visible` ones (the first when the
/// current one is not shown), stopping at the ends.
fn step_within(visible: &[usize], current: Option<usize>, step: isize) -> usize {
    let at = current.and_then(|c| visible.iter().position(|&i| i == c));
    let to = at.map_or(0, |a| {
        (a as isize + step).clamp(0, visible.len() as isize - 1)
    });
    visible[to as usize]
}

/// The History menu: a past query chosen, to search again.
fn history_menu(ui: &mut egui::Ui, history: &[String], enabled: bool) -> Option<String> {
    let mut chosen = None;
    ui.add_enabled_ui(enabled && !history.is_empty(), |ui| {
        ui.menu_button("History", |ui| {
            for q in history {
                if ui.button(q).clicked() {
                    chosen = Some(q.clone());
                    ui.close();
                }
            }
        })
        .response
        .on_hover_text("queries searched before, most recent first")
        .on_disabled_hover_text("no query searched yet");
    });
    chosen
}

/// One filter: "all", or one of `values` (shown by `name`).
fn filter_combo<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    label: &str,
    chosen: &mut Option<T>,
    values: &[T],
    name: impl Fn(&T) -> String,
) {
    let shown = chosen.as_ref().map_or("all".to_owned(), &name);
    let l = ui.label(label);
    egui::ComboBox::from_id_salt(("result-filter", label))
        .selected_text(shown)
        .show_ui(ui, |ui| {
            ui.selectable_value(chosen, None, "all");
            for v in values {
                ui.selectable_value(chosen, Some(v.clone()), name(v));
            }
        })
        .response
        .labelled_by(l.id);
}
