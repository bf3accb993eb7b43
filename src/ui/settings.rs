//! What the app remembers between runs (eframe storage): theme, recent folders and the last
//! settings the user chose. The window stays usable when the stored value is from an older version:
//! unknown or missing fields fall back to defaults.

use super::library::Corpus;
use pagesight_engine::{ModelSettings, Quant, SearchMode, TransferMode};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Key under which the settings live in eframe's storage.
pub const STORAGE_KEY: &str = "pagesight.ui.settings";
const MAX_RECENT: usize = 8;
const MAX_QUERIES: usize = 20;
/// Bumped when a default changes in a way stored settings must follow.
pub const DEFAULTS_VERSION: u32 = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Theme {
    #[default]
    Dark,
    Light,
}

impl Theme {
    pub fn egui(self) -> egui::Theme {
        match self {
            Theme::Dark => egui::Theme::Dark,
            Theme::Light => egui::Theme::Light,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UiSettings {
    /// Which defaults the stored settings were saved under (absent: before version 2, when the
    /// transfer mode defaulted to pageable even on a GPU); `load` brings older ones up to date.
    #[serde(default)]
    pub defaults_version: u32,
    pub theme: Theme,
    /// Most recent first.
    pub recent_folders: Vec<PathBuf>,
    /// The folder the Corpus form shows (the one Start ingests and Add adds).
    pub folder: String,
    /// Every corpus of the library, in the order the user added them.
    pub library: Vec<Corpus>,
    pub model: ModelSettings,
    /// CUDA cards the user unticked in the Corpus form (on a machine with several; every other
    /// card is ticked, so a card added later starts ticked).
    pub unticked_cards: Vec<usize>,
    /// Compute dtype and quantisation picked at Start: the index's own when it exists, else the
    /// device's measured best; `model.dtype` / `model.quant` apply only when this is off.
    pub best_precision: bool,
    /// Pages per batch picked at Start: the device's best (`best_batch_size`); `batch_size`
    /// applies only when this is off.
    pub best_batch: bool,
    pub batch_size: usize,
    pub workers: usize,
    pub transfer: TransferMode,
    /// Whether the Corpus form's Advanced section is open (closed by default; absent from
    /// settings saved before it: closed).
    pub advanced_open: bool,
    pub search_mode: SearchMode,
    /// Visual ranking through the sign-bit prefilter + exact rerank instead of exact MaxSim.
    pub fast_search: bool,
    /// Where visual ranking runs: empty or `local`, or `qdrant://host:port/collection` (a
    /// collection the index was exported to).
    pub search_backend: String,
    pub top_k: usize,
    pub heatmap_opacity: f32,
    pub show_heatmap: bool,
    pub ab: AbForm,
    /// Queries searched, most recent first (the Search view's History menu).
    pub query_history: Vec<String>,
}

/// The A/B compare form: the same pages under two settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AbForm {
    pub pages: usize,
    pub a: AbSideForm,
    pub b: AbSideForm,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AbSideForm {
    pub batch_size: usize,
    pub workers: usize,
    pub quant: Quant,
    pub transfer: TransferMode,
}

impl Default for AbSideForm {
    fn default() -> Self {
        AbSideForm {
            batch_size: 4,
            workers: 2,
            quant: Quant::None,
            transfer: TransferMode::default(),
        }
    }
}

impl AbSideForm {
    /// A label that says what differs, e.g. "batch 2 · workers 2 · f32 · sync".
    pub fn label(&self, cuda: bool) -> String {
        let mut s = format!(
            "batch {} · workers {} · {}",
            self.batch_size,
            self.workers,
            self.quant.name()
        );
        if cuda {
            s.push_str(&format!(" · {}", self.transfer.name()));
        }
        s
    }
}

impl Default for AbForm {
    fn default() -> Self {
        AbForm {
            pages: 8,
            a: AbSideForm {
                batch_size: 2,
                ..Default::default()
            },
            b: AbSideForm {
                batch_size: 8,
                ..Default::default()
            },
        }
    }
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            defaults_version: DEFAULTS_VERSION,
            theme: Theme::Dark,
            recent_folders: Vec::new(),
            folder: String::new(),
            library: Vec::new(),
            model: default_model(),
            unticked_cards: Vec::new(),
            best_precision: true,
            best_batch: true,
            batch_size: 4,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(8),
            // Used where CUDA is (the app falls back to pageable where it is not).
            transfer: TransferMode::Async,
            advanced_open: false,
            search_mode: SearchMode::Visual,
            fast_search: false,
            search_backend: String::new(),
            top_k: 12,
            heatmap_opacity: 0.55,
            show_heatmap: true,
            ab: AbForm::default(),
            query_history: Vec::new(),
        }
    }
}

/// The model a first run offers: the published ColQwen2.5 (downloaded on first use).
pub fn default_model() -> ModelSettings {
    let mut m = ModelSettings::default();
    super::model_choice::set_real_model(&mut m);
    m
}

impl UiSettings {
    /// Reads the settings from eframe storage; defaults when absent or unreadable.
    pub fn load(storage: Option<&dyn eframe::Storage>) -> Self {
        let mut s: UiSettings = storage
            .and_then(|s| eframe::get_value::<UiSettings>(s, STORAGE_KEY))
            .unwrap_or_default();
        if s.defaults_version < DEFAULTS_VERSION {
            // Saved before the device's best became the default: nothing here was a choice the
            // old app let the user keep apart from its default, so take the new ones.
            if s.defaults_version < 2 {
                s.transfer = TransferMode::Async;
                s.best_precision = true;
            }
            // Version 3: the visual-token budget defaults to the checkpoint's own; the old
            // default was a fixed 768, which the app offered but few changed.
            if s.model.max_visual_tokens == Some(768) {
                s.model.max_visual_tokens = None;
            }
            // Version 4: one folder became a library; the folder the old app ingested is its
            // first corpus, with the index the old app gave it.
            let folder = PathBuf::from(s.folder.trim());
            if s.library.is_empty() && !folder.as_os_str().is_empty() {
                let index = pagesight_common::paths::default_index_for(&folder);
                s.library.push(Corpus::new(&folder, &index));
            }
            // Version 5: the real model is the default; random:tiny, the old default, was
            // never a choice the old form offered apart from typing it.
            if s.model.model == "random:tiny" && s.model.adapter.is_none() {
                super::model_choice::set_real_model(&mut s.model);
            }
            // Version 6: the batch follows the device (8 on a GPU). A stored 4 was the old
            // fixed default, any other size the user's choice, which stays.
            if s.defaults_version < 6 {
                s.best_batch = s.batch_size == 4;
            }
            // Version 7: the kernels before an FP8 GEMM write its codes by default. The app
            // offers none of the GPU kernel switches, so what it stored were the old defaults.
            if s.defaults_version < 7 {
                s.model.gpu_kernels = Default::default();
            }
            s.defaults_version = DEFAULTS_VERSION;
        }
        s
    }

    pub fn store(&self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, self);
    }

    /// The batch Start sends (`cuda`: the model runs on a CUDA GPU): the device's best while
    /// `best_batch` is on, else the user's size.
    pub fn start_batch(&self, cuda: bool) -> usize {
        if self.best_batch {
            pagesight_engine::settings::best_batch_size(cuda)
        } else {
            self.batch_size.max(1)
        }
    }

    /// Moves `folder` to the front of the recent list (deduplicated, bounded).
    pub fn remember_folder(&mut self, folder: &Path) {
        self.recent_folders.retain(|f| f != folder);
        self.recent_folders.insert(0, folder.to_path_buf());
        self.recent_folders.truncate(MAX_RECENT);
    }

    /// The corpus of `folder`, if the library has it.
    pub fn corpus_of(&self, folder: &Path) -> Option<usize> {
        self.library.iter().position(|c| c.folder == folder)
    }

    /// Moves `query` to the front of the query history (deduplicated, bounded).
    pub fn remember_query(&mut self, query: &str) {
        self.query_history.retain(|q| q != query);
        self.query_history.insert(0, query.to_owned());
        self.query_history.truncate(MAX_QUERIES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MemoryStorage(HashMap<String, String>);
    impl eframe::Storage for MemoryStorage {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    #[test]
    fn settings_survive_a_restart() {
        let mut s = UiSettings {
            theme: Theme::Light,
            batch_size: 16,
            advanced_open: true,
            ..Default::default()
        };
        for i in 0..10 {
            s.remember_folder(Path::new(&format!("/corpus/{i}")));
        }
        s.remember_folder(Path::new("/corpus/3"));
        for i in 0..30 {
            s.remember_query(&format!("query {}", i % 25));
        }
        s.remember_query("query 7");
        assert_eq!(s.query_history.len(), MAX_QUERIES);
        assert_eq!(s.query_history[..2], ["query 7", "query 4"]);
        assert_eq!(s.recent_folders.len(), MAX_RECENT);
        assert_eq!(s.recent_folders[0], Path::new("/corpus/3"));
        assert_eq!(
            s.recent_folders.iter().filter(|p| p.ends_with("3")).count(),
            1
        );
        let mut storage = MemoryStorage::default();
        s.store(&mut storage);
        assert_eq!(UiSettings::load(Some(&storage)), s);
    }

    #[test]
    fn settings_saved_before_the_device_defaults_take_them() {
        let mut storage = MemoryStorage::default();
        eframe::Storage::set_string(
            &mut storage,
            STORAGE_KEY,
            "(theme: Light, transfer: pageable, batch_size: 2)".into(),
        );
        let s = UiSettings::load(Some(&storage));
        assert_eq!((s.theme, s.batch_size), (Theme::Light, 2), "choices kept");
        assert!(!s.best_batch, "a batch the user chose stays theirs");
        assert!(!s.advanced_open, "the Advanced section starts closed");
        assert_eq!(s.transfer, TransferMode::Async);
        assert!(s.best_precision);
        assert_eq!(s.defaults_version, DEFAULTS_VERSION);
        // Saved under the current defaults, a choice of pageable stays.
        let mine = UiSettings {
            transfer: TransferMode::Pageable,
            best_precision: false,
            ..Default::default()
        };
        mine.store(&mut storage);
        assert_eq!(UiSettings::load(Some(&storage)), mine);
    }

    #[test]
    fn gpu_kernels_stored_with_the_old_defaults_take_the_new_ones() {
        let mut storage = MemoryStorage::default();
        let mut old = UiSettings {
            defaults_version: 6,
            ..Default::default()
        };
        old.model.gpu_kernels.fp8_codes = false;
        old.store(&mut storage);
        let s = UiSettings::load(Some(&storage));
        assert!(s.model.gpu_kernels.fp8_codes);
        assert_eq!(s.defaults_version, DEFAULTS_VERSION);
        // Stored under the current defaults, the switch stays as it was stored.
        let mine = UiSettings {
            model: ModelSettings {
                gpu_kernels: pagesight_model::GpuKernels {
                    fp8_codes: false,
                    ..Default::default()
                },
                ..UiSettings::default().model
            },
            ..Default::default()
        };
        mine.store(&mut storage);
        assert!(!UiSettings::load(Some(&storage)).model.gpu_kernels.fp8_codes);
    }

    #[test]
    fn the_one_folder_of_older_settings_becomes_the_first_corpus() {
        let mut storage = MemoryStorage::default();
        eframe::Storage::set_string(
            &mut storage,
            STORAGE_KEY,
            "(defaults_version: 3, folder: \"/papers/thesis\")".into(),
        );
        let s = UiSettings::load(Some(&storage));
        assert_eq!(s.library.len(), 1);
        let c = &s.library[0];
        assert_eq!(c.folder, Path::new("/papers/thesis"));
        assert_eq!(
            c.index,
            pagesight_common::paths::default_index_for(Path::new("/papers/thesis"))
        );
        assert!(c.searched && c.watched);
        // Stored again and read back, nothing more is added.
        s.store(&mut storage);
        assert_eq!(UiSettings::load(Some(&storage)).library, s.library);
        // No folder, no corpus.
        eframe::Storage::set_string(&mut storage, STORAGE_KEY, "(defaults_version: 3)".into());
        assert!(UiSettings::load(Some(&storage)).library.is_empty());
    }

    #[test]
    fn old_or_broken_settings_fall_back_to_defaults() {
        let mut storage = MemoryStorage::default();
        eframe::Storage::set_string(
            &mut storage,
            STORAGE_KEY,
            "(theme: Light, gone_field: 1)".into(),
        );
        let s = UiSettings::load(Some(&storage));
        assert_eq!(s.theme, Theme::Light);
        assert_eq!(s.top_k, UiSettings::default().top_k);
        eframe::Storage::set_string(&mut storage, STORAGE_KEY, "not ron at all".into());
        assert_eq!(UiSettings::load(Some(&storage)), UiSettings::default());
        assert_eq!(UiSettings::load(None), UiSettings::default());
    }
}
