//! The app's side of the library: adding, re-ingesting and removing corpora, and searching the
//! ticked ones (one engine request per corpus, merged when all have answered).

use super::*;
use crate::ui::library::corpus::unix_now;
use crate::ui::library::{Corpus, LibraryAction};
use crate::ui::search::{Asked, ResultSet};
use pagesight_engine::library_search::gather::{Answer, Gather, Searched};

impl PagesightApp {
    /// The library's corpus for `folder`, added (with the index `index_path` gives it) when new.
    pub(super) fn ensure_corpus(&mut self, folder: &Path) -> Option<usize> {
        if let Some(at) = self.settings.corpus_of(folder) {
            return Some(at);
        }
        let index = self.index_for_new(folder)?;
        self.settings.library.push(Corpus::new(folder, &index));
        if index.exists() {
            self.send(Command::Stats { index });
        }
        Some(self.settings.library.len() - 1)
    }

    pub(super) fn on_library_action(&mut self, action: LibraryAction) {
        match action {
            LibraryAction::Add => {
                let folder = PathBuf::from(self.settings.folder.trim());
                self.ensure_corpus(&folder);
            }
            LibraryAction::Reingest(at) => {
                if let Some(c) = self.settings.library.get(at) {
                    self.settings.folder = c.folder.display().to_string();
                    self.start_ingest_of(at, true);
                }
            }
            LibraryAction::Remove { at, delete_index } => self.remove_corpus(at, delete_index),
        }
    }

    fn remove_corpus(&mut self, at: usize, delete_index: bool) {
        if at >= self.settings.library.len() {
            return;
        }
        let c = self.settings.library.remove(at);
        self.library.stats.remove(&c.index);
        self.watch_forget(&c.folder);
        self.notify(format!("{} removed from the library", c.name()));
        if delete_index {
            let index = c.index.clone();
            self.bg
                .spawn("delete-index", move || delete_index_folder(&index));
        }
    }

    /// Records when `index`'s corpus last finished an ingest.
    pub(super) fn ingest_finished_in(&mut self, index: &Path) {
        if let Some(c) = self.settings.library.iter_mut().find(|c| c.index == index) {
            c.last_ingest = Some(unix_now());
        }
    }

    /// Searches every ticked corpus; the view sees one search.
    pub(super) fn search(&mut self, query: String) {
        let searched: Vec<Corpus> = self
            .settings
            .library
            .iter()
            .filter(|c| c.searched)
            .cloned()
            .collect();
        if searched.is_empty() {
            return;
        }
        let backend = match self.settings.search_backend.trim() {
            "" => SearchBackend::Local,
            s => match s.parse::<SearchBackend>() {
                Ok(b) => b,
                Err(e) => {
                    self.search.error = Some(format!("{e:#}"));
                    return;
                }
            },
        };
        // A Qdrant collection is one ranking: it is asked once, with the first ticked corpus's
        // index for the text of text and hybrid searches.
        let searched = match backend {
            SearchBackend::Local => searched,
            _ => searched.into_iter().take(1).collect(),
        };
        let id = self.id();
        let mode = self.settings.search_mode;
        let top_k = self.settings.top_k.max(1);
        self.search.pending = Some(id);
        self.search.error = None;
        self.search.asked = Asked { mode };
        self.settings.remember_query(&query);
        let mut gather = Gather::new(id, &query, mode, top_k);
        let cards = crate::ui::card_choice::for_search(
            self.settings.model.device,
            &self.cards(),
            &self.settings.unticked_cards,
        );
        for c in searched {
            let request_id = self.id();
            let mut req = SearchRequest {
                id: request_id,
                index: c.index.clone(),
                query: query.clone(),
                top_k,
                mode,
                hybrid_visual_weight: 0.5,
                with_heatmaps: true,
                // Queries run where the user chose to run the model.
                device: self.settings.model.device,
                devices: None,
                visual_scorer: if self.settings.fast_search {
                    VisualScorer::Binary { candidates: 0 }
                } else {
                    VisualScorer::Exact
                },
                backend: backend.clone(),
            };
            // The ticked cards: the page tiles sharded over them when one cannot hold them.
            if let Some(set) = &cards {
                req.set_devices(set);
            }
            if !self.send(Command::Search(req)) {
                self.search.pending = None;
                self.search.error = Some("the engine is not running".into());
                return;
            }
            gather.asked(
                request_id,
                Searched {
                    corpus: c.name(),
                    provenance: self.library.stats_of(&c).and_then(|s| s.provenance.clone()),
                },
            );
        }
        self.gather = Some(gather);
    }

    /// An engine answer or error for a library search; returns whether it was one.
    pub(super) fn on_search_answer(
        &mut self,
        request_id: u64,
        answer: Result<Answer, String>,
    ) -> bool {
        let Some(gather) = self.gather.as_mut() else {
            return false;
        };
        if !gather.is_waiting_for(request_id) {
            return false;
        }
        if !gather.answer(request_id, answer) {
            return true;
        }
        let gather = self.gather.take().expect("checked above");
        let (id, query) = (gather.id, gather.query.clone());
        let done = gather.finish();
        if let Some(why) = done.all_failed {
            self.search.on_error(id, &why);
            return true;
        }
        let (hits, corpora, groups) = ResultSet::from_groups(done.groups);
        let keys: Vec<ThumbKey> = hits
            .iter()
            .map(|h| ThumbKey {
                file: h.file.clone(),
                page: h.page,
                max_side: crate::ui::search::GRID_THUMB_SIDE,
            })
            .collect();
        let ours = self.search.pending == Some(id);
        self.search.on_results(ResultSet {
            id,
            query,
            hits,
            elapsed_ms: done.elapsed_ms,
            note: done.note,
            scorer: done.scorer,
            timings: done.timings,
            asked: self.search.asked.clone(),
            corpora,
            groups,
        });
        if ours {
            for k in keys {
                self.request_thumbnail(k);
            }
        }
        true
    }
}

/// Deletes an index folder, only if it is one (holds the index's manifest).
fn delete_index_folder(index: &Path) -> UiMsg {
    let failed = |message: String| UiMsg::Failed {
        context: index.display().to_string(),
        message,
    };
    if !index.exists() {
        return UiMsg::Info(format!("{} was already gone", index.display()));
    }
    if !index.join(pagesight_index::format::MANIFEST_FILE).is_file() {
        return failed("not deleted: it does not look like an index folder (no MANIFEST)".into());
    }
    match std::fs::remove_dir_all(index) {
        Ok(()) => UiMsg::Info(format!("deleted the index folder {}", index.display())),
        Err(e) => failed(format!("could not delete the index folder: {e}")),
    }
}
