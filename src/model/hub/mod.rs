//! The model's files from the Hugging Face hub into the standard Hugging Face cache
//! (`models--org--name/blobs`, `snapshots/<commit>/`, `refs/main`), so the hub's own tools and
//! this app share one copy. One function (`ensure`) serves every caller: the command line's
//! `--model <hub id>` (with a terminal bar, `terminal`), the engine's download command (with
//! progress events and a cancel flag), the tests (against a mock hub).
//!
//! - `config`: endpoint, cache folder, token, proxy and offline mode from the environment;
//! - `listing`: the repo's files with their sizes and hashes (one API request);
//! - `fetch`: one file, resumed with `Range`, hashed, renamed into place only when verified;
//! - `download`: the plan, the disk check, the files, then the snapshot's links and `refs/main`;
//! - `layout`: the cache's folders and the offline "is it complete?" check;
//! - `hash`, `disk`, `progress`, `error`, `terminal`: one concern each.
//!
//! Why not `hf_hub::api::sync` alone: it downloads one file per call with a progress bar, and
//! resumes a `.part` file, but it cannot be cancelled, checks no hash, does not know the repo's
//! total size before it starts (so no disk check and no overall progress or ETA), ignores
//! `HF_HUB_CACHE`, and links each file into the snapshot as soon as it arrives (a download that
//! stops part-way leaves a snapshot that looks half there). What it does provide is used: the
//! repo's folder name and API path (`hf_hub::Repo`), and ureq, its HTTP client, with the same
//! proxy handling (`HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`).

pub mod config;
pub mod disk;
pub mod download;
pub mod error;
mod fetch;
pub mod hash;
pub mod layout;
pub mod listing;
pub mod progress;
pub mod terminal;

pub use config::{hub_cache_dir, HubConfig};
pub use download::{download, ensure, plan, DownloadPlan};
pub use error::DownloadError;
pub use fetch::file_url;
pub use layout::{complete_snapshot, RepoCache, RepoKind};
pub use progress::DownloadProgress;

/// The published ColQwen2.5: the base checkpoint and the v0.2 LoRA adapter on it (the adapter's
/// `adapter_config.json` names the base).
pub const DEFAULT_MODEL: &str = "vidore/colqwen2.5-base";
pub const DEFAULT_ADAPTER: &str = "vidore/colqwen2.5-v0.2";

/// `owner/name`, not a path that exists.
pub fn is_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
        && !s.contains('\\')
        && !std::path::Path::new(s).exists()
}

/// The hub repos a model choice needs (a base given as a hub id, an adapter given as one);
/// empty for random models and local folders.
pub fn repos_of(model: &str, adapter: Option<&str>) -> Vec<(String, RepoKind)> {
    let mut r = Vec::new();
    if is_hub_id(model) {
        r.push((model.to_string(), RepoKind::Model));
    }
    if let Some(a) = adapter.filter(|a| is_hub_id(a)) {
        r.push((a.to_string(), RepoKind::Adapter));
    }
    r
}

/// The hub repos of a model choice that are not complete in the cache (never the network).
pub fn missing_repos(
    cfg: &HubConfig,
    model: &str,
    adapter: Option<&str>,
) -> Vec<(String, RepoKind)> {
    repos_of(model, adapter)
        .into_iter()
        .filter(|(r, k)| complete_snapshot(&cfg.cache_dir, r, *k).is_none())
        .collect()
}

/// Borrowed form of a repo list, as `ensure` / `plan` take it.
pub fn borrowed(repos: &[(String, RepoKind)]) -> Vec<(&str, RepoKind)> {
    repos.iter().map(|(r, k)| (r.as_str(), *k)).collect()
}
