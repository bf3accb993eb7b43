//! The local index: multi-vector segments, manifest, tantivy text, search.
