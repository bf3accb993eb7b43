//! The Search view: query box (Enter searches) with its history, mode, a grid of page thumbnails
//! with score, file, page and text snippet (the query's terms highlighted); filters by corpus,
//! folder and file; export of the shown list as Markdown or CSV. Arrows move the selection, Enter
//! or a click opens the large view with the similarity heatmap, Esc closes it; Ctrl+C (or a card's
//! menu) copies the page's reference, `file, p. N`.

mod filter;
mod snippet_text;

use super::format;
use super::heatmap;
use super::settings::UiSettings;
use super::thumbnails::{ThumbKey, ThumbState, Thumbnails};
use crate::export::results::{self, Format, ResultList};
use filter::ResultFilter;
use pagesight_engine::event::SearchHit;
use pagesight_engine::SearchMode;
use std::collections::HashMap;
use std::path::PathBuf;

pub const GRID_THUMB_SIDE: u32 = 256;
pub const LARGE_THUMB_SIDE: u32 = 1280;
const CARD_WIDTH: f32 = 190.0;
/// Lines of snippet on a card (the large view shows more).
const SNIPPET_ROWS: usize = 4;

pub struct ResultSet {
    pub id: u64,
    pub query: String,
    pub hits: Vec<SearchHit>,
    pub elapsed_ms: f64,
    pub note: Option<String>,
    /// What ranked the pages (GPU or CPU, which kernel).
    pub scorer: String,
    /// Where `elapsed_ms` went.
    pub timings: pagesight_engine::event::SearchTimings,
    /// What was asked: the mode.
    pub asked: Asked,
    /// The corpus each hit came from, aligned with `hits`.
    pub corpora: Vec<String>,
    /// The groups of comparable scores in `hits`, in order (one unless corpora made with another
    /// model were searched too).
    pub groups: Vec<HitGroupInfo>,
}

/// A run of `hits` ranked together: the corpora made with one model.
#[derive(Clone, Debug, PartialEq)]
pub struct HitGroupInfo {
    pub model: String,
    pub len: usize,
}

impl ResultSet {
    /// Flattens merged groups into one list, keeping where each group starts.
    pub fn from_groups(
        groups: Vec<pagesight_engine::library_search::merge::HitGroup>,
    ) -> (Vec<SearchHit>, Vec<String>, Vec<HitGroupInfo>) {
        let mut hits = Vec::new();
        let mut corpora = Vec::new();
        let mut info = Vec::new();
        for g in groups {
            info.push(HitGroupInfo {
                model: g.model,
                len: g.hits.len(),
            });
            for (c, h) in g.hits {
                corpora.push(c);
                hits.push(h);
            }
        }
        (hits, corpora, info)
    }

    /// The group each position of `hits` belongs to.
    fn group_of(&self, position: usize) -> usize {
        let mut end = 0;
        for (g, info) in self.groups.iter().enumerate() {
            end += info.len;
            if position < end {
                return g;
            }
        }
        self.groups.len().saturating_sub(1)
    }
}

/// What a search was asked of, kept with its answer (the event does not repeat it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Asked {
    pub mode: SearchMode,
}

pub enum SearchAction {
    Search(String),
    Thumbnail(ThumbKey),
    OpenPdf(PathBuf, u32),
    /// Show the file in the platform's file manager.
    Reveal(PathBuf),
    /// Put this reference on the clipboard.
    CopyReference(String),
    /// Write the shown results, already rendered in `Format`.
    Export(Format, String),
}

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

    fn show_large(
        &mut self,
        ctx: &egui::Context,
        settings: &mut UiSettings,
        thumbs: &mut Thumbnails,
        visible: &[usize],
        actions: &mut Vec<SearchAction>,
    ) {
        let (Some(results), Some(sel)) = (&self.results, self.selected) else {
            self.large_open = false;
            return;
        };
        let Some(hit) = results.hits.get(sel) else {
            self.large_open = false;
            return;
        };
        let at = visible.iter().position(|&i| i == sel).unwrap_or(0);
        let n = visible.len();
        let large_key = ThumbKey {
            file: hit.file.clone(),
            page: hit.page,
            max_side: LARGE_THUMB_SIDE,
        };
        if matches!(thumbs.get(&large_key), ThumbState::Missing) {
            actions.push(SearchAction::Thumbnail(large_key.clone()));
        }
        let overlay = hit.heatmap.as_ref().map(|h| {
            self.overlays
                .entry(sel)
                .or_insert_with(|| {
                    heatmap::image(h).map(|img| {
                        ctx.load_texture(
                            format!("heatmap#{sel}"),
                            img,
                            egui::TextureOptions::LINEAR,
                        )
                    })
                })
                .clone()
        });
        let screen = ctx.content_rect();
        let mut step = 0isize;
        let modal = egui::Modal::new(egui::Id::unique("large-view")).show(ctx, |ui| {
            ui.set_max_width(screen.width() * 0.85);
            ui.horizontal(|ui| {
                ui.heading(format!(
                    "#{} · {} · page {}",
                    hit.rank,
                    format::file_name(&hit.file),
                    hit.page
                ));
                ui.label(format!("score {:.3}", hit.score));
            });
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(at > 0, egui::Button::new("Previous"))
                    .clicked()
                {
                    step = -1;
                }
                if ui
                    .add_enabled(at + 1 < n, egui::Button::new("Next"))
                    .clicked()
                {
                    step = 1;
                }
                ui.add_enabled(
                    overlay.is_some(),
                    egui::Checkbox::new(&mut settings.show_heatmap, "Heatmap"),
                );
                ui.add_enabled(
                    overlay.is_some() && settings.show_heatmap,
                    egui::Slider::new(&mut settings.heatmap_opacity, 0.0..=1.0).text("opacity"),
                );
                hit_buttons(ui, hit, actions);
                if ui.button("Close").clicked() {
                    ui.close();
                }
            });
            if let Some(s) = &hit.snippet {
                let font = egui::TextStyle::Body.resolve(ui.style());
                ui.add(egui::Label::new(snippet_text::job(s, ui.visuals(), font, 4)).wrap());
            }
            match &overlay {
                None => ui
                    .label("No heatmap for this result (the engine sends maps for visual search)."),
                Some(Err(why)) => {
                    ui.label(egui::RichText::new(why).color(ui.visuals().error_fg_color))
                }
                Some(Ok(_)) => ui.label(format!(
                    "Heatmap: per-patch similarity to “{}”",
                    results.query
                )),
            };
            let max_h = screen.height() * 0.7;
            let small = grid_key(hit);
            let texture = match thumbs.get(&large_key) {
                ThumbState::Ready(t) => Some(t.clone()),
                _ => match thumbs.get(&small) {
                    ThumbState::Ready(t) => Some(t.clone()),
                    _ => None,
                },
            };
            let size = texture
                .as_ref()
                .map_or(egui::vec2(0.7, 1.0), |t| t.size_vec2());
            let shown = size * (max_h / size.y).min(screen.width() * 0.8 / size.x);
            // Centred under the row of controls, which is usually wider than a portrait page
            // (a centred layout would stretch the window to its maximum width instead).
            let indent = ((ui.min_rect().width() - shown.x) / 2.0).max(0.0);
            ui.horizontal(|ui| {
                ui.add_space(indent);
                match &texture {
                    Some(t) => {
                        let page = format!("{} page {}", format::file_name(&hit.file), hit.page);
                        let resp =
                            ui.add(egui::Image::new(t).fit_to_exact_size(shown).alt_text(page));
                        if let (true, Some(Ok(ov))) = (settings.show_heatmap, &overlay) {
                            heatmap::paint(ui.painter(), resp.rect, ov, settings.heatmap_opacity);
                        }
                    }
                    None => {
                        ui.add_sized(shown, egui::Spinner::new());
                    }
                }
            });
            if !ui.ctx().memory(|m| m.focused().is_some()) {
                ui.input(|i| {
                    if i.key_pressed(egui::Key::ArrowRight) || i.key_pressed(egui::Key::ArrowDown) {
                        step = 1;
                    } else if i.key_pressed(egui::Key::ArrowLeft)
                        || i.key_pressed(egui::Key::ArrowUp)
                    {
                        step = -1;
                    }
                });
            }
        });
        if modal.should_close() {
            self.large_open = false;
        }
        if step != 0 {
            self.selected = Some(step_within(visible, Some(sel), step));
        }
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

/// What can be done with a result, beyond opening it: the large view's buttons.
fn hit_buttons(ui: &mut egui::Ui, hit: &SearchHit, actions: &mut Vec<SearchAction>) {
    if ui.button("Open PDF at this page").clicked() {
        actions.push(SearchAction::OpenPdf(hit.file.clone(), hit.page));
    }
    if ui.button("Reveal in file manager").clicked() {
        actions.push(SearchAction::Reveal(hit.file.clone()));
    }
    if ui
        .button("Copy reference")
        .on_hover_text(results::reference(hit))
        .clicked()
    {
        actions.push(SearchAction::CopyReference(results::reference(hit)));
    }
}

/// A card's context menu: the same as the large view's buttons.
fn hit_menu(ui: &mut egui::Ui, hit: &SearchHit, actions: &mut Vec<SearchAction>) {
    let before = actions.len();
    hit_buttons(ui, hit, actions);
    if actions.len() > before {
        ui.close();
    }
}

fn grid_key(hit: &SearchHit) -> ThumbKey {
    ThumbKey {
        file: hit.file.clone(),
        page: hit.page,
        max_side: GRID_THUMB_SIDE,
    }
}

/// One result card; the whole card is the click target and carries an accessible label.
fn card(
    ui: &mut egui::Ui,
    // The hit's place in the result list (ranks restart in each model's group).
    position: usize,
    hit: &SearchHit,
    // Shown when the results come from several corpora.
    corpus: Option<&str>,
    thumbs: &mut Thumbnails,
    key: &ThumbKey,
    selected: bool,
) -> egui::Response {
    let label = format!(
        "Result {}: {} page {} (score {:.3})",
        hit.rank,
        format::file_name(&hit.file),
        hit.page,
        hit.score
    );
    let frame = egui::Frame::group(ui.style()).stroke(if selected {
        egui::Stroke::new(2.0, ui.visuals().selection.stroke.color)
    } else {
        ui.visuals().widgets.noninteractive.bg_stroke
    });
    let inner = frame.show(ui, |ui| {
        ui.set_width(CARD_WIDTH);
        ui.vertical_centered(|ui| {
            let thumb_h = 220.0;
            match thumbs.get(key) {
                ThumbState::Ready(t) => {
                    let size = t.size_vec2();
                    let scale = (thumb_h / size.y).min(CARD_WIDTH / size.x);
                    ui.add(egui::Image::new(t).fit_to_exact_size(size * scale));
                }
                ThumbState::Failed(why) => {
                    ui.add_sized(
                        [CARD_WIDTH, thumb_h],
                        egui::Label::new(format!("no preview: {why}")).wrap(),
                    );
                }
                ThumbState::Missing | ThumbState::Loading => {
                    ui.add_sized([CARD_WIDTH, thumb_h], egui::Spinner::new());
                }
            }
            ui.label(egui::RichText::new(format!("#{}  {:.3}", hit.rank, hit.score)).strong());
            if let Some(c) = corpus {
                ui.weak(format!("in {c}"));
            }
            ui.add(
                egui::Label::new(format!(
                    "{} · p. {}",
                    format::file_name(&hit.file),
                    hit.page
                ))
                .truncate(),
            );
            if let Some(s) = &hit.snippet {
                let font = egui::TextStyle::Small.resolve(ui.style());
                let job = snippet_text::job(s, ui.visuals(), font, SNIPPET_ROWS);
                ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                    ui.add(egui::Label::new(job).wrap());
                });
            }
        });
    });
    let resp = ui.interact(
        inner.response.rect,
        egui::Id::unique(("result-card", position)),
        egui::Sense::click(),
    );
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
    resp
}

/// "query 8.1 ms · scoring 3.0 ms · …": the steps that took time, for the results line's tooltip.
pub fn time_by_step(t: &pagesight_engine::event::SearchTimings) -> String {
    let steps = [
        ("opening the index", t.open_ms),
        ("loading the query model", t.model_load_ms),
        ("embedding the query", t.embed_ms),
        ("GPU page tiles", t.tiles_ms),
        ("scoring", t.score_ms),
        ("heatmaps", t.heatmap_ms),
    ];
    let parts: Vec<String> = steps
        .iter()
        .filter(|(_, ms)| *ms >= 0.05)
        .map(|(what, ms)| format!("{what} {ms:.1} ms"))
        .collect();
    if parts.is_empty() {
        "no step took measurable time".into()
    } else {
        parts.join(" · ")
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn the_tooltip_names_the_steps_that_took_time() {
        let t = pagesight_engine::event::SearchTimings {
            embed_ms: 8.14,
            score_ms: 3.0,
            model_load_ms: 0.001,
            ..Default::default()
        };
        assert_eq!(
            time_by_step(&t),
            "embedding the query 8.1 ms · scoring 3.0 ms"
        );
        assert_eq!(
            time_by_step(&Default::default()),
            "no step took measurable time"
        );
    }
}
