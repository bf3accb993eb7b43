//! One index page as one Qdrant point: its id, its multivector and its payload.
//!
//! The id is derived from what the page *is* (its file's content hash and its page number), not
//! from the index's page id, so the same page always lands on the same point: an export that is
//! repeated, resumed or run from a rebuilt index overwrites rather than duplicates, and the
//! collection's ids alone say which pages it holds.

use pagesight_index::{Provenance, Searcher};
use qdrant_client::qdrant::{PointStruct, Vector};
use qdrant_client::Payload;
use std::collections::HashMap;

/// The named vector that holds a page's multivector.
pub const VECTOR_NAME: &str = "page";

/// Payload keys.
pub mod key {
    pub const FILE_HASH: &str = "file_hash";
    pub const FILE_PATH: &str = "file_path";
    pub const PAGE: &str = "page";
    pub const TITLE: &str = "title";
    pub const TEXT: &str = "text";
    pub const PROVENANCE: &str = "provenance";
}

/// The point id of page `page` (1-based) of the file with content hash `file_hash`.
pub fn point_id(file_hash: &[u8; 32], page: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"pagesight-page-v1");
    h.update(file_hash);
    h.update(&page.to_le_bytes());
    let b = h.finalize();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A live page of a snapshot, as the export plans it.
#[derive(Clone, Copy, Debug)]
pub struct PageToSend {
    /// Position in the snapshot's storage order (`Searcher::page_view`).
    pub position: usize,
    pub page_id: u64,
    pub point_id: u64,
}

/// Every live page of `searcher` with its point id, in storage order.
pub fn pages_of(searcher: &Searcher) -> Vec<PageToSend> {
    searcher
        .live_pages()
        .into_iter()
        .enumerate()
        .map(|(position, (page_id, hash, page))| PageToSend {
            position,
            page_id,
            point_id: point_id(&hash, page),
        })
        .collect()
}

/// Bytes a page's vectors take on the wire (f32 values).
pub fn wire_bytes(searcher: &Searcher, p: &PageToSend) -> usize {
    searcher.page_view(p.position).n_tokens * searcher.provenance().dim * 4
}

/// The point for one page: its vectors unpacked from the stored f16 (exactly representable in
/// the collection's f16 storage) and its payload.
pub fn build_point(
    searcher: &Searcher,
    p: &PageToSend,
    provenance: &qdrant_client::qdrant::Value,
) -> pagesight_index::Result<PointStruct> {
    let dim = searcher.provenance().dim;
    let view = searcher.page_view(p.position);
    let flat = pagesight_index::vectors::unpack_all(view.packed, dim, view.n_tokens);
    let rows: Vec<Vec<f32>> = flat.chunks_exact(dim).map(<[f32]>::to_vec).collect();
    let hit = searcher.hit(p.page_id, 0.0)?;
    let text = searcher.page_text(p.page_id)?;
    let mut payload = Payload::new();
    payload.insert(key::FILE_HASH, pagesight_index::format::hex(&hit.file_hash));
    payload.insert(key::FILE_PATH, hit.file_path.to_string_lossy().into_owned());
    payload.insert(key::PAGE, hit.page as i64);
    if let Some(t) = hit.title {
        payload.insert(key::TITLE, t);
    }
    if !text.is_empty() {
        payload.insert(key::TEXT, text);
    }
    payload.insert(key::PROVENANCE, provenance.clone());
    let vectors: HashMap<String, Vector> =
        HashMap::from([(VECTOR_NAME.to_string(), Vector::new_multi(rows))]);
    Ok(PointStruct::new(p.point_id, vectors, payload))
}

/// The provenance as a payload / metadata value.
pub fn provenance_value(p: &Provenance) -> qdrant_client::qdrant::Value {
    serde_json::to_value(p)
        .expect("provenance serialises")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_content_and_page_only() {
        let a = [7u8; 32];
        let b = [8u8; 32];
        assert_eq!(point_id(&a, 1), point_id(&a, 1));
        assert_ne!(point_id(&a, 1), point_id(&a, 2));
        assert_ne!(point_id(&a, 1), point_id(&b, 1));
    }
}
