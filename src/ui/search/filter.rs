//! Narrowing a result list by corpus, folder and file. The choices are read off the results
//! themselves, and a choice stays set across searches (a researcher working in one folder keeps
//! working in it); a choice the new results do not have shows nothing until it is cleared.

use pagesight_engine::event::SearchHit;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a result list is narrowed to; `None` lets everything through.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultFilter {
    pub corpus: Option<String>,
    pub folder: Option<PathBuf>,
    pub file: Option<PathBuf>,
}

/// Where a hit is: the corpus its index belongs to, its folder and its file.
pub struct Place<'a> {
    pub corpus: &'a str,
    pub file: &'a Path,
}

impl Place<'_> {
    pub fn folder(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new(""))
    }
}

impl ResultFilter {
    pub fn is_active(&self) -> bool {
        *self != ResultFilter::default()
    }

    pub fn admits(&self, p: &Place<'_>) -> bool {
        self.corpus.as_deref().is_none_or(|c| c == p.corpus)
            && self.folder.as_deref().is_none_or(|f| f == p.folder())
            && self.file.as_deref().is_none_or(|f| f == p.file)
    }

    /// The positions in `hits` this filter lets through, in order.
    /// `corpora[i]` is the corpus of `hits[i]`.
    pub fn visible(&self, corpora: &[String], hits: &[SearchHit]) -> Vec<usize> {
        hits.iter()
            .zip(corpora)
            .enumerate()
            .filter(|(_, (h, c))| {
                self.admits(&Place {
                    corpus: c,
                    file: &h.file,
                })
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// The values to choose from: every corpus, folder and file of the results, each list sorted. The
/// files are those of the chosen folder when one is chosen.
pub struct Choices {
    pub corpora: Vec<String>,
    pub folders: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
}

pub fn choices(filter: &ResultFilter, corpora: &[String], hits: &[SearchHit]) -> Choices {
    let places = || {
        hits.iter().zip(corpora).map(|(h, c)| Place {
            corpus: c,
            file: &h.file,
        })
    };
    let names: BTreeSet<String> = corpora.iter().cloned().collect();
    let folders: BTreeSet<PathBuf> = places().map(|p| p.folder().to_path_buf()).collect();
    let files: BTreeSet<PathBuf> = places()
        .filter(|p| filter.folder.as_deref().is_none_or(|f| f == p.folder()))
        .map(|p| p.file.to_path_buf())
        .collect();
    Choices {
        corpora: names.into_iter().collect(),
        folders: folders.into_iter().collect(),
        files: files.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(file: &str) -> SearchHit {
        SearchHit {
            rank: 1,
            score: 0.0,
            file: file.into(),
            page: 1,
            title: None,
            heatmap: None,
            snippet: None,
        }
    }

    #[test]
    fn folder_and_file_narrow_the_list() {
        let hits = [hit("/c/a/x.pdf"), hit("/c/b/y.pdf"), hit("/c/a/z.pdf")];
        let thesis = vec!["thesis".to_owned(); 3];
        let mut f = ResultFilter::default();
        assert_eq!(f.visible(&thesis, &hits), [0, 1, 2]);
        f.folder = Some("/c/a".into());
        assert_eq!(f.visible(&thesis, &hits), [0, 2]);
        let c = choices(&f, &thesis, &hits);
        assert_eq!(c.folders, [PathBuf::from("/c/a"), "/c/b".into()]);
        assert_eq!(c.files, [PathBuf::from("/c/a/x.pdf"), "/c/a/z.pdf".into()]);
        f.file = Some("/c/a/z.pdf".into());
        assert_eq!(f.visible(&thesis, &hits), [2]);
        f = ResultFilter {
            corpus: Some("other".into()),
            ..Default::default()
        };
        assert!(f.visible(&thesis, &hits).is_empty());
        assert!(f.is_active());
        let mixed = ["thesis".to_owned(), "papers".into(), "thesis".into()];
        f.corpus = Some("papers".into());
        assert_eq!(f.visible(&mixed, &hits), [1]);
        assert_eq!(choices(&f, &mixed, &hits).corpora, ["papers", "thesis"]);
    }
}
