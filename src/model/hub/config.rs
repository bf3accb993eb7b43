//! Where the hub is and where its files go, from the environment the Hugging Face tools read:
//! `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`, `HF_TOKEN` (or the token file `huggingface-cli
//! login` writes), `HF_HUB_OFFLINE`, and the proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, as ureq reads them).

use crate::env_vars;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Clone, Debug)]
pub struct HubConfig {
    /// `https://huggingface.co` or a mirror (`HF_ENDPOINT`), no trailing slash.
    pub endpoint: String,
    /// The hub cache: `models--org--name/` folders live here.
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE=1`: never touch the network.
    pub offline: bool,
    /// Take the proxy from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`.
    pub proxy_from_env: bool,
    /// Test hook (`test-hooks` builds, `PAGESIGHT_HUB_FREE_BYTES`): the free space the disk
    /// check sees, instead of the file system's.
    #[cfg(feature = "test-hooks")]
    pub fake_free_bytes: Option<u64>,
    /// Test hook (`test-hooks` builds, `PAGESIGHT_HUB_DISK_FULL_AFTER`): writes fail with ENOSPC
    /// once this many bytes were written in this download.
    #[cfg(feature = "test-hooks")]
    pub fake_disk_full_after: Option<u64>,
}

impl HubConfig {
    /// The endpoint and cache the environment names (the Hugging Face tools' own rules).
    pub fn from_env() -> HubConfig {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var(env_vars::HF_ENDPOINT).unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let token = var(env_vars::HF_TOKEN)
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let file = var(env_vars::HF_TOKEN_PATH)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home().join("token"));
                std::fs::read_to_string(file)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        let offline = var(env_vars::HF_HUB_OFFLINE).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let mut c = HubConfig {
            token,
            offline,
            proxy_from_env: true,
            ..HubConfig::new(&endpoint, hub_cache_dir())
        };
        #[cfg(feature = "test-hooks")]
        {
            c.fake_free_bytes = var(env_vars::HUB_FREE_BYTES).and_then(|v| v.parse().ok());
            c.fake_disk_full_after =
                var(env_vars::HUB_DISK_FULL_AFTER).and_then(|v| v.parse().ok());
        }
        c.endpoint = c.endpoint.trim_end_matches('/').to_string();
        c
    }

    /// A hub at `endpoint` with its cache in `cache_dir`: no token, no proxy (tests, mirrors).
    pub fn new(endpoint: &str, cache_dir: PathBuf) -> HubConfig {
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir,
            token: None,
            offline: false,
            proxy_from_env: false,
            #[cfg(feature = "test-hooks")]
            fake_free_bytes: None,
            #[cfg(feature = "test-hooks")]
            fake_disk_full_after: None,
        }
    }

    /// The HTTP client: a connection that stalls for a minute counts as lost (and is resumed).
    pub(crate) fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("pagesight/", env!("CARGO_PKG_VERSION")))
            .try_proxy_from_env(self.proxy_from_env)
            .build()
    }

    pub(crate) fn get(&self, agent: &ureq::Agent, url: &str) -> ureq::Request {
        let r = agent.get(url);
        match &self.token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    if let Some(h) = std::env::var_os(env_vars::HF_HOME).filter(|v| !v.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("huggingface");
    }
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface")
}

/// The hub cache: `HF_HUB_CACHE`, else `<hf_home>/hub`.
pub fn hub_cache_dir() -> PathBuf {
    match std::env::var_os(env_vars::HF_HUB_CACHE).filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => hf_home().join("hub"),
    }
}
