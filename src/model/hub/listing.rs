//! What the hub holds for a repo: one request to its API (`/api/models/<repo>/revision/main
//! ?blobs=true`) gives the commit, and every file's size and hash (`lfs.sha256` for large files,
//! `blobId` — the git blob sha1 — for the others), so the total size is known and the disk
//! checked before the first byte, and each file is verified against what the hub itself says.

use super::config::HubConfig;
use super::error::DownloadError;
use super::hash::FileHash;
use super::layout::RepoKind;

#[derive(Clone, Debug, PartialEq)]
pub struct RemoteFile {
    /// The file's path in the repo.
    pub name: String,
    pub size: u64,
    pub hash: FileHash,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RepoListing {
    pub repo: String,
    pub kind: RepoKind,
    pub commit: String,
    /// The files the snapshot gets, small ones first.
    pub files: Vec<RemoteFile>,
}

impl RepoListing {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Top-level files a ColQwen2.5 snapshot uses: configs, tokenizer files and safetensors weights
/// (not READMEs, images, or the PyTorch `.bin` copies some repos also carry).
fn wanted(name: &str) -> bool {
    !name.contains('/')
        && !name.starts_with('.')
        && [".json", ".safetensors", ".txt", ".model", ".jinja"]
            .iter()
            .any(|ext| name.ends_with(ext))
        && name != "README.txt"
}

/// The API's URL for `repo` (its `main` revision).
pub fn listing_url(cfg: &HubConfig, repo: &str) -> String {
    format!(
        "{}/api/{}?blobs=true",
        cfg.endpoint,
        hf_hub::Repo::model(repo.to_string()).api_url()
    )
}

/// Lists `repo` on the hub and picks the files a `kind` snapshot needs.
pub fn list(
    cfg: &HubConfig,
    agent: &ureq::Agent,
    repo: &str,
    kind: RepoKind,
) -> Result<RepoListing, DownloadError> {
    let url = listing_url(cfg, repo);
    if cfg.offline {
        return Err(DownloadError::Offline {
            endpoint: cfg.endpoint.clone(),
            repos: repo.to_string(),
            cache_dir: cfg.cache_dir.clone(),
            detail: "HF_HUB_OFFLINE is set".into(),
        });
    }
    let resp = cfg.get(agent, &url).call().map_err(|e| match e {
        ureq::Error::Status(401 | 403, r) => DownloadError::Refused {
            repo: repo.into(),
            status: r.status(),
            url: url.clone(),
        },
        ureq::Error::Status(404, _) => DownloadError::RepoNotFound {
            repo: repo.into(),
            url: url.clone(),
        },
        ureq::Error::Status(status, _) => DownloadError::Http {
            what: format!("the file list of {repo}"),
            status,
            url: url.clone(),
        },
        ureq::Error::Transport(t) => DownloadError::Offline {
            endpoint: cfg.endpoint.clone(),
            repos: repo.to_string(),
            cache_dir: cfg.cache_dir.clone(),
            detail: t.to_string(),
        },
    })?;
    let bad = |detail: String| DownloadError::BadListing {
        repo: repo.into(),
        url: url.clone(),
        detail,
    };
    let v: serde_json::Value = resp
        .into_json()
        .map_err(|e| bad(format!("not JSON: {e}")))?;
    parse(repo, kind, &v).map_err(bad).and_then(|l| {
        check_required(&l, &url)?;
        Ok(l)
    })
}

fn parse(repo: &str, kind: RepoKind, v: &serde_json::Value) -> Result<RepoListing, String> {
    let commit = v["sha"]
        .as_str()
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
        .ok_or("no commit (`sha`)")?
        .to_string();
    let siblings = v["siblings"]
        .as_array()
        .ok_or("no file list (`siblings`)")?;
    let mut files = Vec::new();
    for s in siblings {
        let Some(name) = s["rfilename"].as_str() else {
            continue;
        };
        if !wanted(name) {
            continue;
        }
        let lfs = &s["lfs"];
        let (hash, size) = match (lfs["sha256"].as_str(), s["blobId"].as_str()) {
            (Some(sha), _) => (
                FileHash::Sha256(sha.to_ascii_lowercase()),
                lfs["size"].as_u64().or(s["size"].as_u64()),
            ),
            (None, Some(blob)) => (
                FileHash::GitSha1(blob.to_ascii_lowercase()),
                s["size"].as_u64(),
            ),
            (None, None) => return Err(format!("no hash for {name} (`lfs.sha256` / `blobId`)")),
        };
        let size = size.ok_or_else(|| format!("no size for {name}"))?;
        if !hash.hex().chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("the hash of {name} is not hex"));
        }
        files.push(RemoteFile {
            name: name.to_string(),
            size,
            hash,
        });
    }
    files.sort_by(|a, b| a.size.cmp(&b.size).then(a.name.cmp(&b.name)));
    Ok(RepoListing {
        repo: repo.to_string(),
        kind,
        commit,
        files,
    })
}

/// A repo without what a `kind` needs is refused before anything is downloaded.
fn check_required(l: &RepoListing, url: &str) -> Result<(), DownloadError> {
    let has = |f: &str| l.files.iter().any(|x| x.name == f);
    let what = match l.kind {
        RepoKind::Model => "ColQwen2.5 snapshot (config.json, tokenizer.json, safetensors weights)",
        RepoKind::Adapter => "PEFT adapter (adapter_config.json, adapter_model.safetensors)",
    };
    let mut missing: Vec<&str> = l
        .kind
        .required()
        .iter()
        .copied()
        .filter(|f| !has(f))
        .collect();
    if l.kind == RepoKind::Model
        && !has("model.safetensors")
        && !has("model.safetensors.index.json")
    {
        missing.push("model.safetensors");
    }
    match missing.first() {
        None => Ok(()),
        Some(f) => Err(DownloadError::FileNotFound {
            repo: l.repo.clone(),
            file: f.to_string(),
            url: url.to_string(),
            what,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_gives_hashes_and_sizes_and_skips_what_is_not_used() {
        let v = serde_json::json!({
            "sha": "abc123",
            "siblings": [
                {"rfilename": "README.md", "size": 10, "blobId": "aa"},
                {"rfilename": "config.json", "size": 100, "blobId": "AB"},
                {"rfilename": "model.safetensors", "size": 5,
                 "blobId": "cc", "lfs": {"sha256": "dd", "size": 5000, "pointerSize": 130}},
                {"rfilename": "pytorch_model.bin", "size": 5, "lfs": {"sha256": "ee", "size": 5}},
                {"rfilename": "sub/x.json", "size": 5, "blobId": "ff"},
            ]
        });
        let l = parse("o/r", RepoKind::Model, &v).unwrap();
        assert_eq!(l.commit, "abc123");
        assert_eq!(
            l.files,
            vec![
                RemoteFile {
                    name: "config.json".into(),
                    size: 100,
                    hash: FileHash::GitSha1("ab".into())
                },
                RemoteFile {
                    name: "model.safetensors".into(),
                    size: 5000,
                    hash: FileHash::Sha256("dd".into())
                },
            ]
        );
        assert!(
            check_required(&l, "u").is_err(),
            "tokenizer.json is missing"
        );
    }
}
