//! Where a collection lives: a server URL (gRPC; https means TLS) and a collection name, from
//! `--url URL --collection NAME` or one search backend string `qdrant://host:port/collection`.

use super::error::{RemoteError, Result};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CollectionAddress {
    /// `http://host:port` or `https://host:port`, the server's gRPC endpoint.
    pub url: String,
    pub collection: String,
}

impl CollectionAddress {
    /// `qdrant://host:port/collection` (plain gRPC) or `qdrants://host:port/collection` (TLS).
    pub fn parse_backend(s: &str) -> Result<CollectionAddress> {
        let bad = || RemoteError::BadAddress(s.to_string());
        let (scheme, rest) = if let Some(r) = s.strip_prefix("qdrant://") {
            ("http", r)
        } else if let Some(r) = s.strip_prefix("qdrants://") {
            ("https", r)
        } else {
            return Err(bad());
        };
        let (host, collection) = rest.split_once('/').ok_or_else(bad)?;
        let collection = collection.trim_end_matches('/');
        if host.is_empty() || collection.is_empty() || collection.contains('/') {
            return Err(bad());
        }
        Ok(CollectionAddress {
            url: format!("{scheme}://{host}"),
            collection: collection.to_string(),
        })
    }

    /// The backend string that names this collection again (`qdrant://…` or `qdrants://…`).
    pub fn backend_string(&self) -> String {
        let (scheme, host) = match self.url.strip_prefix("https://") {
            Some(h) => ("qdrants", h),
            None => ("qdrant", self.url.trim_start_matches("http://")),
        };
        format!("{scheme}://{host}/{}", self.collection)
    }
}

/// A server URL as given to `--url`: http(s)://host:port, without a trailing slash.
pub fn check_url(url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    let host = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| RemoteError::BadAddress(url.to_string()))?;
    if host.is_empty() || host.contains('/') {
        return Err(RemoteError::BadAddress(url.to_string()));
    }
    Ok(u.to_string())
}

/// The collection an index is exported to when none is named: the index folder's name, with
/// anything but letters, digits, `-` and `_` replaced.
pub fn default_collection(index: &Path) -> String {
    let name = index
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "pagesight".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_strings_round_trip() {
        let a = CollectionAddress::parse_backend("qdrant://127.0.0.1:6334/papers").unwrap();
        assert_eq!(a.url, "http://127.0.0.1:6334");
        assert_eq!(a.collection, "papers");
        assert_eq!(a.backend_string(), "qdrant://127.0.0.1:6334/papers");
        let t = CollectionAddress::parse_backend("qdrants://q.example:443/x/").unwrap();
        assert_eq!(t.url, "https://q.example:443");
        assert_eq!(t.backend_string(), "qdrants://q.example:443/x");
        for bad in [
            "http://h:1/c",
            "qdrant://h:1",
            "qdrant:///c",
            "qdrant://h/a/b",
        ] {
            assert!(CollectionAddress::parse_backend(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_default_names() {
        assert_eq!(check_url("http://h:6334/").unwrap(), "http://h:6334");
        assert!(check_url("h:6334").is_err());
        assert_eq!(
            default_collection(Path::new("/x/my papers-1a2b")),
            "my_papers-1a2b"
        );
    }
}
