//! The tantivy side: page metadata and BM25 over page text. It is derived data: the segments
//! hold every page's text too, so whenever tantivy's state is not exactly the one the manifest
//! recorded (a crash between the two commits, a damaged file) it is rebuilt from the segments.

use super::format::{disk_full_in_message, hex, IndexError, Result};
use std::path::{Path, PathBuf};
use tantivy::collector::TopDocs;
use tantivy::indexer::NoMergePolicy;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::snippet::SnippetGenerator;
use tantivy::{IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

const WRITER_HEAP: usize = 32 << 20;

#[derive(Clone, Copy)]
struct Fields {
    page_id: Field,
    file_hash: Field,
    path: Field,
    title: Field,
    page: Field,
    ingested_at: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        page_id: b.add_u64_field("page_id", INDEXED | STORED | FAST),
        file_hash: b.add_text_field("file_hash", STRING | STORED),
        path: b.add_text_field("path", STRING | STORED),
        title: b.add_text_field("title", TEXT | STORED),
        page: b.add_u64_field("page", STORED),
        ingested_at: b.add_u64_field("ingested_at", STORED),
        text: b.add_text_field("text", TEXT),
    };
    (b.build(), f)
}

pub struct TextDoc<'a> {
    pub page_id: u64,
    pub file_hash: &'a [u8; 32],
    pub path: &'a str,
    pub title: Option<&'a str>,
    pub page: u32,
    pub ingested_at: u64,
    pub text: &'a str,
}

pub struct TextStore {
    /// `None` for an in-memory rebuild.
    dir: Option<PathBuf>,
    index: tantivy::Index,
    fields: Fields,
    writer: Option<IndexWriter>,
    reader: IndexReader,
}

fn text_err(dir: &Path, e: impl std::fmt::Display) -> IndexError {
    let message = e.to_string();
    match disk_full_in_message(&message) {
        Some(cause) => IndexError::DiskFull {
            path: dir.into(),
            cause,
        },
        None => IndexError::Text {
            path: dir.into(),
            message,
        },
    }
}

/// Runs tantivy code, turning a panic on damaged data into an error.
fn guarded<T>(dir: &Path, f: impl FnOnce() -> tantivy::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| match e {
            // The text store sits in the index folder: a taken lock means the index is busy.
            tantivy::TantivyError::LockFailure(..) => IndexError::Busy {
                path: dir.parent().unwrap_or(dir).into(),
                message: e.to_string(),
            },
            e => text_err(dir, e),
        }),
        Err(_) => Err(text_err(dir, "tantivy panicked reading it (damaged files)")),
    }
}

/// The payload (our generation) and meta.json hash of the tantivy commit on disk, if readable.
pub fn disk_commit(dir: &Path) -> Option<(String, String)> {
    let meta = std::fs::read(dir.join("meta.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&meta).ok()?;
    let payload = v.get("payload")?.as_str()?.to_string();
    Some((payload, hex(blake3::hash(&meta).as_bytes())))
}

impl TextStore {
    /// Opens the on-disk text index (creating it when absent) and checks every file's checksum.
    pub fn open_dir(dir: &Path, writable: bool) -> Result<Self> {
        let (schema, fields) = schema();
        let index = guarded(dir, || {
            if dir.join("meta.json").exists() {
                tantivy::Index::open_in_dir(dir)
            } else {
                std::fs::create_dir_all(dir)?;
                tantivy::Index::create_in_dir(dir, schema.clone())
            }
        })?;
        if index.schema() != schema {
            return Err(text_err(dir, "schema differs from this pagesight's"));
        }
        let damaged = guarded(dir, || index.validate_checksum())?;
        if !damaged.is_empty() {
            return Err(text_err(dir, format!("damaged files: {damaged:?}")));
        }
        Self::finish(Some(dir.into()), index, fields, writable)
    }

    pub fn in_ram() -> Result<Self> {
        let (schema, fields) = schema();
        Self::finish(None, tantivy::Index::create_in_ram(schema), fields, true)
    }

    fn finish(
        dir: Option<PathBuf>,
        index: tantivy::Index,
        fields: Fields,
        writable: bool,
    ) -> Result<Self> {
        let d = dir.clone().unwrap_or_default();
        let reader = guarded(&d, || {
            index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
        })?;
        let writer = if writable {
            let w: IndexWriter = guarded(&d, || index.writer_with_num_threads(1, WRITER_HEAP))?;
            w.set_merge_policy(Box::new(NoMergePolicy));
            Some(w)
        } else {
            None
        };
        Ok(Self {
            dir,
            index,
            fields,
            writer,
            reader,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("<in-memory text index>"))
    }

    fn writer(&mut self) -> Result<&mut IndexWriter> {
        let p = self.path();
        self.writer
            .as_mut()
            .ok_or_else(|| text_err(&p, "opened read-only"))
    }

    pub fn add(&mut self, d: &TextDoc<'_>) -> Result<()> {
        let f = self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.page_id, d.page_id);
        doc.add_text(f.file_hash, hex(d.file_hash));
        doc.add_text(f.path, d.path);
        if let Some(t) = d.title {
            doc.add_text(f.title, t);
        }
        doc.add_u64(f.page, d.page as u64);
        doc.add_u64(f.ingested_at, d.ingested_at);
        doc.add_text(f.text, d.text);
        let p = self.path();
        self.writer()?
            .add_document(doc)
            .map_err(|e| text_err(&p, e))?;
        Ok(())
    }

    pub fn delete_file(&mut self, hash: &[u8; 32]) -> Result<()> {
        let term = Term::from_field_text(self.fields.file_hash, &hex(hash));
        self.writer()?.delete_term(term);
        Ok(())
    }

    pub fn delete_all(&mut self) -> Result<()> {
        let p = self.path();
        self.writer()?
            .delete_all_documents()
            .map_err(|e| text_err(&p, e))?;
        Ok(())
    }

    /// Commits with `generation` as payload, merges segments when asked, reloads the reader.
    pub fn commit(&mut self, generation: u64, merge: bool) -> Result<u64> {
        let p = self.path();
        let w = self.writer()?;
        let mut prepared = w.prepare_commit().map_err(|e| text_err(&p, e))?;
        prepared.set_payload(&generation.to_string());
        let mut opstamp = prepared.commit().map_err(|e| text_err(&p, e))?;
        if merge {
            let ids = self
                .index
                .searchable_segment_ids()
                .map_err(|e| text_err(&p, e))?;
            if ids.len() > 1 {
                let w = self.writer()?;
                w.merge(&ids).wait().map_err(|e| text_err(&p, e))?;
                let mut prepared = w.prepare_commit().map_err(|e| text_err(&p, e))?;
                prepared.set_payload(&generation.to_string());
                opstamp = prepared.commit().map_err(|e| text_err(&p, e))?;
            }
        }
        self.reader.reload().map_err(|e| text_err(&p, e))?;
        Ok(opstamp)
    }

    /// The last committed state, for searching.
    pub fn view(&self) -> TextView {
        TextView {
            index: self.index.clone(),
            fields: self.fields,
            searcher: self.reader.searcher(),
            path: self.path(),
        }
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Every page id in the committed text index (for cross-checks).
    pub fn all_page_ids(&self) -> Result<Vec<u64>> {
        page_ids(&self.reader.searcher(), &self.path())
    }
}

/// Page ids of every live document a tantivy searcher sees.
fn page_ids(s: &tantivy::Searcher, p: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for seg in s.segment_readers() {
        let col = seg
            .fast_fields()
            .u64("page_id")
            .map_err(|e| text_err(p, e))?;
        for doc in seg.doc_ids_alive() {
            ids.push(
                col.first(doc)
                    .ok_or_else(|| text_err(p, "document without page id"))?,
            );
        }
    }
    Ok(ids)
}

/// A committed text-index state: cheap to clone, Send + Sync.
#[derive(Clone)]
pub struct TextView {
    index: tantivy::Index,
    fields: Fields,
    searcher: tantivy::Searcher,
    path: PathBuf,
}

impl TextView {
    /// Every page id this view holds (for cross-checks against the vectors).
    pub fn all_page_ids(&self) -> Result<Vec<u64>> {
        page_ids(&self.searcher, &self.path)
    }

    /// The query as BM25 reads it: over page text and titles, lenient about syntax.
    fn parse(&self, query: &str) -> Box<dyn tantivy::query::Query> {
        let parser = QueryParser::for_index(&self.index, vec![self.fields.text, self.fields.title]);
        parser.parse_query_lenient(query).0
    }

    /// BM25 over page text and titles: (page id, score), best first.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<(u64, f32)>> {
        let p = self.path.clone();
        let searcher = &self.searcher;
        let q = self.parse(query);
        let f = self.fields.page_id;
        guarded(&p, || {
            let top = searcher.search(&q, &TopDocs::with_limit(limit.max(1)))?;
            let mut out = Vec::with_capacity(top.len());
            for (score, addr) in top {
                let doc: TantivyDocument = searcher.doc(addr)?;
                if let Some(id) = doc.get_first(f).and_then(|v| v.as_u64()) {
                    out.push((id, score));
                }
            }
            Ok(out)
        })
    }

    /// What finds and marks the query's page-text terms in a page's text (the terms BM25 matches,
    /// through the same analyser), at most `max_chars` long.
    pub fn snippet_generator(&self, query: &str, max_chars: usize) -> Result<SnippetGenerator> {
        let q = self.parse(query);
        let mut g = guarded(&self.path, || {
            SnippetGenerator::create(&self.searcher, &*q, self.fields.text)
        })?;
        g.set_max_num_chars(max_chars);
        Ok(g)
    }
}
