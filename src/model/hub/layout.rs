//! The Hugging Face cache layout, as the hub's own tools write it:
//! `models--org--name/blobs/<hash>` (content, named by its hash), `snapshots/<commit>/<file>`
//! (relative links to the blobs), `refs/main` (the commit `main` pointed to). A file being
//! downloaded is `blobs/<hash>.incomplete`: nothing in a snapshot links to it, so a download
//! that stopped part-way never looks like a file of the model.

use super::hash::FileHash;
use std::io;
use std::path::{Path, PathBuf};

/// What a repo is for: which files a complete snapshot must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RepoKind {
    /// A checkpoint: config.json, tokenizer.json and its safetensors weights.
    Model,
    /// A PEFT LoRA adapter: adapter_config.json and adapter_model.safetensors.
    Adapter,
}

impl RepoKind {
    /// The files a snapshot needs besides the weights (the model's weights are one file or an
    /// index and its shards: `weights::weight_files` decides).
    pub fn required(self) -> &'static [&'static str] {
        match self {
            RepoKind::Model => &["config.json", "tokenizer.json"],
            RepoKind::Adapter => &["adapter_config.json", "adapter_model.safetensors"],
        }
    }
}

#[derive(Clone, Debug)]
pub struct RepoCache {
    root: PathBuf,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, repo: &str) -> RepoCache {
        RepoCache {
            root: cache_dir.join(hf_hub::Repo::model(repo.to_string()).folder_name()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn blob(&self, hash: &FileHash) -> PathBuf {
        self.blobs().join(hash.hex())
    }

    pub fn incomplete(&self, hash: &FileHash) -> PathBuf {
        self.blobs().join(format!("{}.incomplete", hash.hex()))
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    fn ref_main(&self) -> PathBuf {
        self.root.join("refs").join("main")
    }

    /// The commit `refs/main` names.
    pub fn main_commit(&self) -> Option<String> {
        let c = std::fs::read_to_string(self.ref_main()).ok()?;
        let c = c.trim();
        (!c.is_empty() && !c.contains(['/', '\\', '.'])).then(|| c.to_string())
    }

    /// The snapshot `refs/main` points to, if it exists.
    pub fn main_snapshot(&self) -> Option<PathBuf> {
        let dir = self.snapshot(&self.main_commit()?);
        dir.is_dir().then_some(dir)
    }

    /// The blob is here, whole (a blob only gets its name once verified).
    pub fn has_blob(&self, hash: &FileHash, size: u64) -> bool {
        std::fs::metadata(self.blob(hash)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Bytes of the blob downloaded so far (whole or partial).
    pub fn bytes_present(&self, hash: &FileHash, size: u64) -> u64 {
        if self.has_blob(hash, size) {
            return size;
        }
        std::fs::metadata(self.incomplete(hash))
            .map(|m| m.len().min(size))
            .unwrap_or(0)
    }

    /// Links `file` of snapshot `commit` to its (verified) blob; replaces what was there.
    pub fn link(&self, commit: &str, file: &str, hash: &FileHash) -> io::Result<()> {
        let dst = self.snapshot(commit).join(file);
        let parent = dst.parent().expect("a file in a snapshot has a folder");
        std::fs::create_dir_all(parent)?;
        // snapshots/<commit>/<a/b/file> → ../../(../..)blobs/<hash>
        let depth = file.matches('/').count() + 2;
        let mut rel = PathBuf::new();
        for _ in 0..depth {
            rel.push("..");
        }
        rel.push("blobs");
        rel.push(hash.hex());
        match std::fs::symlink_metadata(&dst) {
            Ok(_) => std::fs::remove_file(&dst)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&rel, &dst)
        }
        #[cfg(not(unix))]
        {
            // No symlinks without privileges on Windows: a copy, as the hub's tools fall back to.
            std::fs::copy(self.blob(hash), &dst).map(|_| ())
        }
    }

    /// Points `refs/main` at `commit` (written last: the snapshot is complete by then).
    pub fn set_main(&self, commit: &str) -> io::Result<()> {
        let path = self.ref_main();
        std::fs::create_dir_all(path.parent().expect("refs/"))?;
        pagesight_common::fs::write_atomic(&path, commit.as_bytes())
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// The snapshot of `repo` in the cache at `cache_dir` when it holds everything `kind` needs
/// (never the network: a stat per file).
pub fn complete_snapshot(cache_dir: &Path, repo: &str, kind: RepoKind) -> Option<PathBuf> {
    let dir = RepoCache::new(cache_dir, repo).main_snapshot()?;
    snapshot_is_complete(&dir, kind).then_some(dir)
}

/// `dir` holds what a `kind` needs: the required files, and for a model its weights (one file,
/// or the index and every shard it names).
pub fn snapshot_is_complete(dir: &Path, kind: RepoKind) -> bool {
    kind.required().iter().all(|f| dir.join(f).is_file())
        && (kind == RepoKind::Adapter || crate::colqwen::weights::weight_files(dir).is_ok())
}
