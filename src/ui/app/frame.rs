//! One frame of the window: the `eframe::App` impl (drain, top bar, status and notices panels, the
//! tab's view, repaint scheduling, settings saved to eframe's storage) and the parts around the tabs.

use super::*;

impl PagesightApp {
    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for p in dropped {
            if p.is_dir() {
                self.set_folder(&p);
                self.tab = Tab::Ingest;
            } else if p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("jsonl"))
            {
                self.perf.run_file = p.display().to_string();
                self.tab = Tab::Performance;
                self.bg.load_runs(p);
            } else {
                self.notify(format!(
                    "dropped {}: drop a folder of PDFs, or a run JSON",
                    p.display()
                ));
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Pagesight");
            ui.separator();
            ui.selectable_value(&mut self.tab, Tab::Ingest, "Corpus / Ingest");
            ui.selectable_value(&mut self.tab, Tab::Search, "Search");
            ui.selectable_value(&mut self.tab, Tab::Performance, "Performance");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let (next, text) = match self.settings.theme {
                    crate::ui::settings::Theme::Dark => {
                        (crate::ui::settings::Theme::Light, "Light theme")
                    }
                    crate::ui::settings::Theme::Light => {
                        (crate::ui::settings::Theme::Dark, "Dark theme")
                    }
                };
                if ui.button(text).clicked() {
                    self.settings.theme = next;
                }
            });
        });
    }

    fn notices_panel(&mut self, ui: &mut egui::Ui) {
        let mut clear = false;
        let last = self.notices.last().expect("called with notices");
        let colour = if last.error {
            ui.visuals().error_fg_color
        } else {
            ui.visuals().text_color()
        };
        // The buttons keep their place on the right; a long message (a path, what to do) wraps.
        egui::Sides::new().shrink_left().wrap().show(
            ui,
            |ui| ui.label(egui::RichText::new(&last.text).color(colour)),
            |ui| {
                if ui.small_button("Dismiss").clicked() {
                    clear = true;
                }
                if self.notices.len() > 1 {
                    ui.menu_button(format!("{} more", self.notices.len() - 1), |ui| {
                        for n in self.notices.iter().rev().skip(1) {
                            ui.label(&n.text);
                        }
                    });
                }
            },
        );
        if clear {
            self.notices.clear();
        }
    }

    fn activity(&self) -> String {
        let mut parts = Vec::new();
        if self.ingest.cost.asking().is_some() {
            // Seen from any view: the run waits for an answer in the Corpus view.
            parts.push(
                "ingest paused after its first batch: Continue or Cancel it in Corpus / Ingest"
                    .into(),
            );
        } else if self.ingest.state.is_active() {
            parts.push(match &self.ingest.progress {
                Some(p) => format!("ingesting {}/{}", p.pages_done, p.pages_total),
                None => "ingest starting".into(),
            });
        }
        if let AbState::Running { sides_done } = self.perf.ab {
            parts.push(format!("A/B side {} of 2", (sides_done + 1).min(2)));
        }
        if self.search.pending.is_some() {
            parts.push("searching".into());
        }
        if let Some(w) = self.watch_activity() {
            parts.push(w);
        }
        parts.join(" · ")
    }
}

impl eframe::App for PagesightApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let start = Instant::now();
        let ctx = ui.ctx().clone();
        if self.applied_theme != Some(self.settings.theme) {
            ctx.set_theme(self.settings.theme.egui());
            self.applied_theme = Some(self.settings.theme);
        }
        let more_events = self.drain_events();
        for msg in self.bg_rx.try_iter().collect::<Vec<_>>() {
            self.on_ui_msg(msg);
        }
        self.thumbs.poll();
        self.poll_watch();
        self.handle_dropped_files(&ctx);
        self.status.activity = self.activity();

        egui::Panel::top("top-bar").show(ui, |ui| self.top_bar(ui));
        egui::Panel::bottom("status-bar").show(ui, |ui| self.status.show(ui));
        if !self.notices.is_empty() {
            egui::Panel::bottom("notices").show(ui, |ui| self.notices_panel(ui));
        }
        self.check_model();
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Ingest => {
                self.model_panel_ui(&ctx, ui);
                let busy = self
                    .ingest
                    .state
                    .is_active()
                    .then(|| self.ingest.index_in_use.clone())
                    .flatten();
                for a in self.library.show(
                    ui,
                    &mut self.settings.library,
                    &self.settings.folder,
                    busy.as_deref(),
                ) {
                    self.on_library_action(a);
                }
                ui.separator();
                let hint = self
                    .index_path()
                    .map_or("(chosen from the folder)".into(), |p| {
                        p.display().to_string()
                    });
                let cards = self.cards();
                let transfer_blocked =
                    crate::ui::transfer_choice::transfer_unavailable(self.status.device.as_ref());
                let start_settings = self.ingest_settings();
                let form = crate::ui::corpus_form::FormContext {
                    index_hint: &hint,
                    best_precision: self.best_precision(),
                    cards: &cards,
                    transfer_blocked: transfer_blocked.as_deref(),
                    start_settings: &start_settings,
                    cuda: transfer_blocked.is_none(),
                };
                let blocked = self
                    .model_panel
                    .blocks_start()
                    .then_some("download the model first (the panel above)");
                for a in self.ingest.show(ui, &mut self.settings, &form, blocked) {
                    self.act(&ctx, UserAction::Ingest(a));
                }
            }
            Tab::Search => {
                let ready = self.index_ready();
                for a in self
                    .search
                    .show(ui, &mut self.settings, &mut self.thumbs, ready)
                {
                    self.act(&ctx, UserAction::Search(a));
                }
            }
            Tab::Performance => {
                let running = self.ingest.state.is_active();
                let device = self.status.device.clone();
                for a in self.perf.show(
                    ui,
                    &mut self.settings,
                    device.as_ref(),
                    running,
                    &self.frames,
                ) {
                    self.on_perf_action(&ctx, a);
                }
            }
        });

        // Events left over (budget spent) are drained next frame right away; while work runs the
        // engine's events wake us through the poll below, so an idle window costs nothing.
        if more_events {
            ctx.request_repaint();
        } else if self.ingest.state.is_active()
            || matches!(self.perf.ab, AbState::Running { .. })
            || self.search.pending.is_some()
            || self.model_panel.downloading
        {
            ctx.request_repaint_after(Duration::from_millis(50));
        } else {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        self.frames.record(start.elapsed());
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.settings.store(storage);
    }
}
