//! One library search in flight: a request per corpus went to the engine, and their answers (or
//! errors) are collected until every corpus has answered; then they are merged.

use super::merge::{self, CorpusAnswer, HitGroup};
use crate::event::{SearchHit, SearchTimings};
use crate::SearchMode;
use pagesight_index::Provenance;
use std::collections::HashMap;

/// A corpus searched: its name and what made its vectors, as the library knows them.
pub struct Searched {
    pub corpus: String,
    pub provenance: Option<Provenance>,
}

pub struct Gather {
    /// The id the Search view knows this search by (no engine request carries it).
    pub id: u64,
    pub query: String,
    mode: SearchMode,
    top_k: usize,
    /// Engine request id → position in `answers`.
    waiting: HashMap<u64, usize>,
    answers: Vec<Slot>,
}

struct Slot {
    searched: Searched,
    answer: Option<Result<Answer, String>>,
}

/// One engine answer, as `Event::SearchResults` carries it.
pub struct Answer {
    pub hits: Vec<SearchHit>,
    pub elapsed_ms: f64,
    pub note: Option<String>,
    pub scorer: String,
    pub timings: SearchTimings,
}

/// Every answer merged.
pub struct Gathered {
    pub groups: Vec<HitGroup>,
    /// The searches' times added: the search thread answers them one after another.
    pub elapsed_ms: f64,
    pub timings: SearchTimings,
    /// Each corpus's note and failure, prefixed with its name when there are several.
    pub note: Option<String>,
    pub scorer: String,
    /// Every corpus failed: the first failure.
    pub all_failed: Option<String>,
}

impl Gather {
    pub fn new(id: u64, query: &str, mode: SearchMode, top_k: usize) -> Gather {
        Gather {
            id,
            query: query.to_owned(),
            mode,
            top_k,
            waiting: HashMap::new(),
            answers: Vec::new(),
        }
    }

    /// Records that engine request `request_id` searches `searched`.
    pub fn asked(&mut self, request_id: u64, searched: Searched) {
        self.waiting.insert(request_id, self.answers.len());
        self.answers.push(Slot {
            searched,
            answer: None,
        });
    }

    pub fn is_waiting_for(&self, request_id: u64) -> bool {
        self.waiting.contains_key(&request_id)
    }

    /// Takes an answer or an error; returns whether every corpus has answered.
    pub fn answer(&mut self, request_id: u64, answer: Result<Answer, String>) -> bool {
        if let Some(i) = self.waiting.remove(&request_id) {
            self.answers[i].answer = Some(answer);
        }
        self.waiting.is_empty()
    }

    pub fn finish(self) -> Gathered {
        let several = self.answers.len() > 1;
        let named = |corpus: &str, text: &str| {
            if several {
                format!("{corpus}: {text}")
            } else {
                text.to_owned()
            }
        };
        let (mut notes, mut scorers, mut failures) = (Vec::new(), Vec::new(), Vec::new());
        let (mut elapsed_ms, mut timings) = (0.0, SearchTimings::default());
        let mut answers = Vec::new();
        for slot in self.answers {
            let corpus = slot.searched.corpus;
            match slot.answer {
                Some(Ok(a)) => {
                    if let Some(n) = &a.note {
                        notes.push(named(&corpus, n));
                    }
                    if !scorers.contains(&a.scorer) {
                        scorers.push(a.scorer.clone());
                    }
                    elapsed_ms += a.elapsed_ms;
                    add_timings(&mut timings, &a.timings);
                    answers.push(CorpusAnswer {
                        corpus,
                        provenance: slot.searched.provenance,
                        hits: a.hits,
                    });
                }
                Some(Err(e)) => failures.push(named(&corpus, &format!("search failed: {e}"))),
                None => failures.push(named(&corpus, "no answer")),
            }
        }
        let all_failed = answers.is_empty().then(|| failures.join("; "));
        notes.extend(failures);
        Gathered {
            groups: merge::merge(answers, self.mode, self.top_k),
            elapsed_ms,
            timings,
            note: (!notes.is_empty()).then(|| notes.join("\n")),
            scorer: scorers.join("; "),
            all_failed,
        }
    }
}

fn add_timings(sum: &mut SearchTimings, t: &SearchTimings) {
    sum.open_ms += t.open_ms;
    sum.model_load_ms += t.model_load_ms;
    sum.embed_ms += t.embed_ms;
    sum.tiles_ms += t.tiles_ms;
    sum.score_ms += t.score_ms;
    sum.heatmap_ms += t.heatmap_ms;
}
