//! Starting runs: the settings an ingest or A/B starts from (the remembered form, the cards chosen,
//! a transfer mode every device has), Start on the form's folder or a library corpus, and the A/B.

use super::*;

impl PagesightApp {
    pub(super) fn ingest_settings(&self) -> IngestSettings {
        let mut s = self
            .options
            .base_settings
            .clone()
            .unwrap_or_else(IngestSettings::with_defaults);
        s.model = self.settings.model.clone();
        if self.settings.best_precision {
            self.best_precision().apply_to(&mut s.model);
        }
        let cards = self.cards();
        let chosen =
            crate::ui::card_choice::chosen(s.model.device, &cards, &self.settings.unticked_cards);
        if let Some(set) = chosen {
            s.set_devices(&set);
        }
        s.loader.workers = self.settings.workers.max(1);
        // A mode remembered from a GPU machine would be refused here: use the one every device has.
        let transfer = if self.cuda_usable() {
            self.settings.transfer
        } else {
            TransferMode::Pageable
        };
        s.live = LiveSettings {
            batch_size: self.settings.start_batch(self.cuda_usable()),
            transfer,
        };
        s
    }

    /// The machine's CUDA cards as the engine reported them (none until it has).
    pub(super) fn cards(&self) -> Vec<pagesight_engine::event::CardInfo> {
        self.status
            .device
            .as_ref()
            .map(|d| d.cards.clone())
            .unwrap_or_default()
    }

    pub(crate) fn cuda_usable(&self) -> bool {
        crate::ui::transfer_choice::transfer_unavailable(self.status.device.as_ref()).is_none()
    }

    /// Start: ingests the form's folder, which joins the library if new.
    pub(super) fn start_ingest(&mut self) {
        let folder = PathBuf::from(self.settings.folder.trim());
        if let Some(at) = self.ensure_corpus(&folder) {
            self.start_ingest_of(at, false);
        }
    }

    /// Ingests the library's corpus `at`; `prune` removes the pages of vanished files.
    pub(super) fn start_ingest_of(&mut self, at: usize, prune: bool) {
        let Some(c) = self.settings.library.get(at) else {
            return;
        };
        let (folder, index) = (c.folder.clone(), c.index.clone());
        let mut settings = self.ingest_settings();
        settings.prune = prune;
        self.settings.remember_folder(&folder);
        self.ingest.begin(folder.clone(), index.clone());
        self.perf.reset_live("ingest".into());
        if !self.send(Command::StartIngest {
            folder,
            index,
            settings,
        }) {
            self.ingest.state = RunState::Failed("the engine is not running".into());
        }
    }

    pub(super) fn run_ab(&mut self) {
        let folder = PathBuf::from(self.settings.folder.trim());
        let cuda = self.cuda_usable();
        let side = |form: &crate::ui::settings::AbSideForm, base: &IngestSettings| {
            let mut s = base.clone();
            s.live.batch_size = form.batch_size.max(1);
            s.loader.workers = form.workers.max(1);
            s.model.quant = form.quant;
            if cuda {
                s.live.transfer = form.transfer;
            }
            AbSide {
                label: form.label(cuda),
                settings: s,
            }
        };
        let base = self.ingest_settings();
        let (mut a, mut b) = (
            side(&self.settings.ab.a, &base),
            side(&self.settings.ab.b, &base),
        );
        if a.label == b.label {
            a.label = format!("A: {}", a.label);
            b.label = format!("B: {}", b.label);
        }
        self.perf.ab_started();
        let pages = self.settings.ab.pages.max(1);
        if !self.send(Command::AbCompare {
            folder,
            pages,
            a,
            b,
        }) {
            self.perf.ab = AbState::Failed("the engine is not running".into());
        }
    }
}
