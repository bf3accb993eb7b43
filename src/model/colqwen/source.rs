//! Resolving `--model`: a local snapshot dir, a Hugging Face hub id (local cache first, then a
//! download with progress), or `random:tiny` / `random:3b` (fixed-seed random weights).

use super::config::{ColQwenConfig, SpecialIdsInConfig, TextConfig, VisionConfig};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Seed of the random models: the same name always gives the same weights.
pub const RANDOM_SEED: u64 = 0x05EE_DC01_0E11;

#[derive(Clone, Debug, PartialEq)]
pub enum WeightSource {
    Files(Vec<PathBuf>),
    Random { seed: u64 },
}

#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// What the user named, for messages and the identity.
    pub name: String,
    pub config: ColQwenConfig,
    /// The config.json bytes (hashed into the identity); random models hash their name.
    pub config_bytes: Vec<u8>,
    pub tokenizer: PathBuf,
    pub preprocessor_config: Option<PathBuf>,
    pub weights: WeightSource,
    /// The rank of the random LoRA adapter a random model carries (`random:3b`, shaped as the
    /// published adapter), so its speed figures pay for one; None for checkpoints.
    pub random_adapter_rank: Option<usize>,
}

impl ResolvedModel {
    pub fn is_random(&self) -> bool {
        matches!(self.weights, WeightSource::Random { .. })
    }
}

pub fn resolve(model: &str) -> Result<ResolvedModel> {
    if let Some(kind) = model.strip_prefix("random:") {
        return random_model(model, kind);
    }
    let p = Path::new(model);
    if p.is_dir() {
        return from_dir(model, p);
    }
    if p.exists() {
        bail!("--model {model} is a file; give the snapshot directory that holds config.json");
    }
    if looks_like_hub_id(model) {
        let dir = hub_snapshot(model, crate::hub::RepoKind::Model)?;
        return from_dir(model, &dir);
    }
    bail!("--model {model}: no such directory, and not a hub id (owner/name) or random:tiny / random:3b")
}

/// An adapter given as a directory, or as a hub id (fetched like a model).
pub fn resolve_adapter(adapter: &Path) -> Result<PathBuf> {
    if adapter.is_dir() {
        return Ok(adapter.to_path_buf());
    }
    let s = adapter.to_string_lossy();
    if looks_like_hub_id(&s) {
        return hub_snapshot(&s, crate::hub::RepoKind::Adapter);
    }
    bail!(
        "--adapter {}: no such directory (give a PEFT adapter dir or a hub id)",
        adapter.display()
    )
}

fn looks_like_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
        && !s.contains('\\')
}

fn from_dir(name: &str, dir: &Path) -> Result<ResolvedModel> {
    let cfg_path = dir.join("config.json");
    let config_bytes = std::fs::read(&cfg_path).with_context(|| {
        format!(
            "reading {} (is {} a model snapshot?)",
            cfg_path.display(),
            dir.display()
        )
    })?;
    let config = ColQwenConfig::from_json_str(&String::from_utf8_lossy(&config_bytes))
        .with_context(|| format!("in {}", cfg_path.display()))?;
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        bail!(
            "{} is missing: the snapshot must ship its tokenizer",
            tokenizer.display()
        );
    }
    let pre = dir.join("preprocessor_config.json");
    Ok(ResolvedModel {
        name: name.to_string(),
        config,
        config_bytes,
        tokenizer,
        preprocessor_config: pre.is_file().then_some(pre),
        weights: WeightSource::Files(super::weights::weight_files(dir)?),
        random_adapter_rank: None,
    })
}

/// The published ColQwen2.5 (base weights + the v0.2 LoRA adapter) when both are complete in the
/// local Hugging Face cache: `(model, adapter)` hub ids. Never downloads.
pub fn cached_real_model() -> Option<(String, String)> {
    use crate::hub::{complete_snapshot, HubConfig, RepoKind, DEFAULT_ADAPTER, DEFAULT_MODEL};
    let cache = HubConfig::from_env().cache_dir;
    complete_snapshot(&cache, DEFAULT_MODEL, RepoKind::Model)?;
    complete_snapshot(&cache, DEFAULT_ADAPTER, RepoKind::Adapter)?;
    Some((DEFAULT_MODEL.to_string(), DEFAULT_ADAPTER.to_string()))
}

/// The complete snapshot of `repo` in the local Hugging Face cache, downloaded first when it is
/// not there (`hub::ensure`, the one download path, with a progress bar on the terminal).
fn hub_snapshot(repo: &str, kind: crate::hub::RepoKind) -> Result<PathBuf> {
    let cfg = crate::hub::HubConfig::from_env();
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut bar = crate::hub::terminal::terminal_progress();
    let dirs = crate::hub::ensure(&cfg, &[(repo, kind)], &never, &mut bar)?;
    Ok(dirs.into_iter().next().expect("one dir per repo"))
}

/// The tokenizer shipped in `assets/tokenizer/` (a reduced real Qwen2 vocabulary): found via
/// `PAGESIGHT_TOKENIZER`, next to the executable, or in the source tree.
pub fn shipped_tokenizer() -> Result<PathBuf> {
    if let Ok(p) = std::env::var(crate::env_vars::TOKENIZER) {
        return Ok(PathBuf::from(p));
    }
    let rel = Path::new("assets").join("tokenizer").join("tokenizer.json");
    pagesight_common::paths::shipped_file_candidates(&rel)
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "random models need the shipped tokenizer {} (or set PAGESIGHT_TOKENIZER)",
                rel.display()
            )
        })
}

/// `random:tiny`: every real feature at toy sizes (several windows, a full-attention block, GQA,
/// M-RoPE). `random:3b`: the real Qwen2.5-VL-3B / ColQwen2.5 shapes.
pub fn random_config(kind: &str, vocab_size: usize) -> Result<ColQwenConfig> {
    let (text, vision) = match kind {
        "tiny" => (
            TextConfig {
                hidden_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                intermediate_size: 128,
                vocab_size,
                rms_norm_eps: 1e-6,
                rope_theta: 1_000_000.0,
                mrope_section: vec![2, 3, 3],
            },
            VisionConfig {
                depth: 3,
                hidden_size: 32,
                hidden_act: "silu".into(),
                intermediate_size: 48,
                num_heads: 2,
                in_channels: 3,
                patch_size: 14,
                spatial_merge_size: 2,
                temporal_patch_size: 2,
                window_size: 112,
                out_hidden_size: 64,
                fullatt_block_indexes: vec![1],
                rope_parameters: None,
            },
        ),
        "3b" => (
            TextConfig {
                hidden_size: 2048,
                num_hidden_layers: 36,
                num_attention_heads: 16,
                num_key_value_heads: 2,
                intermediate_size: 11008,
                vocab_size: vocab_size.max(151_936),
                rms_norm_eps: 1e-6,
                rope_theta: 1_000_000.0,
                mrope_section: vec![16, 24, 24],
            },
            VisionConfig {
                depth: 32,
                hidden_size: 1280,
                hidden_act: "silu".into(),
                intermediate_size: 3420,
                num_heads: 16,
                in_channels: 3,
                patch_size: 14,
                spatial_merge_size: 2,
                temporal_patch_size: 2,
                window_size: 112,
                out_hidden_size: 2048,
                fullatt_block_indexes: vec![7, 15, 23, 31],
                rope_parameters: None,
            },
        ),
        other => bail!("unknown random model 'random:{other}': expected random:tiny or random:3b"),
    };
    Ok(ColQwenConfig {
        text,
        vision,
        special: SpecialIdsInConfig::default(),
    })
}

fn random_model(name: &str, kind: &str) -> Result<ResolvedModel> {
    let tokenizer = shipped_tokenizer()?;
    let tok = tokenizers::Tokenizer::from_file(&tokenizer)
        .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", tokenizer.display()))?;
    let config = random_config(kind, tok.get_vocab_size(true))?;
    Ok(ResolvedModel {
        name: name.to_string(),
        config,
        config_bytes: name.as_bytes().to_vec(),
        tokenizer,
        preprocessor_config: None,
        weights: WeightSource::Random { seed: RANDOM_SEED },
        // The published ColQwen2.5 adapter's rank; the tiny model stays adapter-free and fast.
        random_adapter_rank: (kind == "3b").then_some(32),
    })
}
