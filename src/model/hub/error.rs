//! Why a download stopped, each in words that name the thing and say what to do. The partial
//! files stay in the cache (`blobs/<hash>.incomplete`) unless the message says otherwise, so the
//! next download resumes where this one stopped.

use super::disk::{gb, gb_diff};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "could not reach the Hugging Face hub at {endpoint} to fetch {repos} (offline? {detail}). \
         {}", offline_help(.repos, .cache_dir)
    )]
    Offline {
        endpoint: String,
        /// The repos asked for, `org/name`, comma-separated.
        repos: String,
        cache_dir: PathBuf,
        detail: String,
    },
    #[error(
        "the hub refused {repo} (HTTP {status} for {url}): the repo is private or gated, or the \
         token is wrong — set HF_TOKEN to a token of an account with access (huggingface.co → \
         Settings → Access Tokens), or run `huggingface-cli login`"
    )]
    Refused {
        repo: String,
        status: u16,
        url: String,
    },
    #[error(
        "the hub has no repo {repo} (HTTP 404 for {url}): check the id; a ColQwen2.5 checkpoint \
         holds config.json, tokenizer.json and safetensors weights"
    )]
    RepoNotFound { repo: String, url: String },
    #[error(
        "the hub has no file {file} in {repo} (404 Not Found: {url} does not list it): check the \
         repo id, and that it holds a {what}"
    )]
    FileNotFound {
        repo: String,
        file: String,
        url: String,
        what: &'static str,
    },
    #[error("downloading {what} failed: HTTP {status} for {url}")]
    Http {
        what: String,
        status: u16,
        url: String,
    },
    #[error("the hub's answer for {repo} ({url}) was not understood: {detail}")]
    BadListing {
        repo: String,
        url: String,
        detail: String,
    },
    #[error(
        "not enough disk space for {repos}: {} more to download into {}, only {} free there — free \
         {} or set HF_HOME (or HF_HUB_CACHE) to a disk with room, then download again",
        gb(.needed), .dir.display(), gb(.free), gb_diff(.needed, .free)
    )]
    NotEnoughDisk {
        repos: String,
        dir: PathBuf,
        needed: u64,
        free: u64,
    },
    #[error(
        "the disk filled up while downloading {file} of {repo} into {}: {} of it is kept — free {} \
         (or more) and press Resume (or run the command again) to continue from there",
        .dir.display(), gb(.kept), gb(.missing)
    )]
    DiskFull {
        repo: String,
        file: String,
        dir: PathBuf,
        kept: u64,
        missing: u64,
    },
    #[error(
        "{file} of {repo} did not match the hub's hash (expected {expected}, got {got}) even after \
         fetching it again: the copy was discarded and nothing was linked into the snapshot; try \
         again later, or check for a proxy that alters downloads"
    )]
    HashMismatch {
        repo: String,
        file: String,
        expected: String,
        got: String,
    },
    #[error(
        "the connection broke while downloading {file} of {repo} ({} of {} kept): {detail} — \
         download again to resume from there",
        gb(.done), gb(.total)
    )]
    ConnectionLost {
        repo: String,
        file: String,
        done: u64,
        total: u64,
        detail: String,
    },
    #[error("another download of {file} of {repo} is running (it holds {})", .path.display())]
    Busy {
        repo: String,
        file: String,
        path: PathBuf,
    },
    #[error("download cancelled (what was downloaded is kept; Resume continues from there)")]
    Cancelled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> DownloadError {
        DownloadError::Io {
            what: what.into(),
            source,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self, DownloadError::Cancelled)
    }
}

fn offline_help(repos: &str, cache_dir: &std::path::Path) -> String {
    let list: Vec<&str> = repos.split(", ").filter(|r| !r.is_empty()).collect();
    let commands: Vec<String> = list
        .iter()
        .map(|r| format!("`huggingface-cli download {r}`"))
        .collect();
    let folders: Vec<String> = list
        .iter()
        .map(|r| format!("models--{}", r.replace('/', "--")))
        .collect();
    format!(
        "Connect (set HTTPS_PROXY behind a proxy, HF_ENDPOINT for a mirror), or on a machine that \
         is online run {} and copy the folder(s) {} from its ~/.cache/huggingface/hub/ into {} on \
         this one (or point HF_HOME at a copy of that cache).",
        commands.join(" and "),
        folders.join(", "),
        cache_dir.display()
    )
}
