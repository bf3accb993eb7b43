//! The results of a search as the view keeps them, and what the view asks of the app.

use crate::export::results::Format;
use crate::ui::thumbnails::ThumbKey;
use pagesight_engine::event::SearchHit;
use pagesight_engine::SearchMode;
use std::path::PathBuf;

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
    pub(super) fn group_of(&self, position: usize) -> usize {
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
