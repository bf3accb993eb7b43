//! A PEFT LoRA adapter dir (`adapter_config.json` + `adapter_model.safetensors`): merged into a
//! weight at load, W' = W + scale · B · A, or kept as its two factors beside a quantised weight
//! (`LoraMode`); scale = alpha / r (alpha / √r with rsLoRA).

use super::config::TextConfig;
use super::weights::{canonical_name, random_tensor};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// B's values relative to a weight-like draw (std 1/√r): small, as a trained adapter's are.
const RANDOM_B_AMPLITUDE: f64 = 0.1;

#[derive(Deserialize)]
struct AdapterConfig {
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    use_rslora: bool,
    target_modules: Option<serde_json::Value>,
    #[serde(default)]
    rank_pattern: HashMap<String, serde_json::Value>,
    #[serde(default)]
    alpha_pattern: HashMap<String, serde_json::Value>,
    peft_type: Option<String>,
}

/// Which modules the adapter targets: PEFT's list (module name or suffix) or a regex matched
/// against the whole module path.
enum Targets {
    Names(Vec<String>),
    /// Anchored at both ends (PEFT uses `re.fullmatch`); fancy-regex for the lookarounds PEFT
    /// users write, e.g. `(?!.*visual)`.
    Regex(fancy_regex::Regex),
    Any,
}

impl Targets {
    fn matches(&self, module: &str) -> bool {
        match self {
            Targets::Names(n) => n
                .iter()
                .any(|t| module == t || module.ends_with(&format!(".{t}"))),
            Targets::Regex(r) => r.is_match(module).unwrap_or(false),
            Targets::Any => true,
        }
    }
}

struct Pair {
    a: Tensor,
    b: Tensor,
}

pub struct LoraAdapter {
    dir: PathBuf,
    scale: f64,
    /// Canonical weight name (`….q_proj.weight`) → its A/B pair (f32, CPU).
    pairs: HashMap<String, Pair>,
    pub rank: usize,
    pub alpha: f64,
    /// blake3 of adapter_config.json and adapter_model.safetensors.
    pub hash: String,
}

impl LoraAdapter {
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let cfg_text = std::fs::read_to_string(&cfg_path).with_context(|| {
            format!(
                "reading {} (is {} a PEFT adapter dir?)",
                cfg_path.display(),
                dir.display()
            )
        })?;
        let cfg: AdapterConfig = serde_json::from_str(&cfg_text)
            .with_context(|| format!("parsing {}", cfg_path.display()))?;
        if let Some(p) = &cfg.peft_type {
            if p != "LORA" {
                bail!(
                    "{}: peft_type is {p}, only LORA adapters are supported",
                    cfg_path.display()
                );
            }
        }
        if !cfg.rank_pattern.is_empty() || !cfg.alpha_pattern.is_empty() {
            bail!(
                "{}: per-module rank_pattern/alpha_pattern are not supported",
                cfg_path.display()
            );
        }
        if cfg.r == 0 {
            bail!("{}: field `r` must be > 0", cfg_path.display());
        }
        let targets = match &cfg.target_modules {
            None | Some(serde_json::Value::Null) => Targets::Any,
            Some(serde_json::Value::String(s)) => Targets::Regex(
                fancy_regex::Regex::new(&format!("^(?:{s})$"))
                    .with_context(|| format!("{}: bad target_modules regex", cfg_path.display()))?,
            ),
            Some(v) => Targets::Names(serde_json::from_value(v.clone()).with_context(|| {
                format!(
                    "{}: target_modules must be a string or a list",
                    cfg_path.display()
                )
            })?),
        };
        let scale = if cfg.use_rslora {
            cfg.lora_alpha / (cfg.r as f64).sqrt()
        } else {
            cfg.lora_alpha / cfg.r as f64
        };

        let st_path = dir.join("adapter_model.safetensors");
        if !st_path.is_file() {
            bail!(
                "{} is missing (only safetensors adapters are supported)",
                st_path.display()
            );
        }
        let tensors = candle_core::safetensors::load(&st_path, &Device::Cpu)
            .with_context(|| format!("reading {}", st_path.display()))?;
        let mut a_by_module = HashMap::new();
        let mut b_by_module = HashMap::new();
        for (key, t) in tensors {
            let (module, which) = split_lora_key(&key).with_context(|| {
                format!("{}: unsupported adapter tensor `{key}`", st_path.display())
            })?;
            if !targets.matches(&module) {
                bail!(
                    "{}: tensor `{key}` is for module `{module}`, which target_modules does not match",
                    st_path.display()
                );
            }
            let t = t.to_dtype(DType::F32)?;
            if which == 'A' {
                a_by_module.insert(module, t)
            } else {
                b_by_module.insert(module, t)
            };
        }
        let mut pairs = HashMap::new();
        for (module, a) in a_by_module {
            let b = b_by_module.remove(&module).with_context(|| {
                format!("{}: lora_A for `{module}` has no lora_B", st_path.display())
            })?;
            if a.dim(0)? != cfg.r || b.dim(1)? != cfg.r {
                bail!(
                    "{}: `{module}` has A {:?} and B {:?}, but r = {}",
                    st_path.display(),
                    a.dims(),
                    b.dims(),
                    cfg.r
                );
            }
            pairs.insert(format!("{}.weight", canonical_name(&module)), Pair { a, b });
        }
        if let Some(m) = b_by_module.keys().next() {
            bail!("{}: lora_B for `{m}` has no lora_A", st_path.display());
        }
        if pairs.is_empty() {
            bail!("{}: no LoRA tensors found", st_path.display());
        }
        let mut h = blake3::Hasher::new();
        h.update(cfg_text.as_bytes());
        h.update(
            &std::fs::read(&st_path).with_context(|| format!("hashing {}", st_path.display()))?,
        );
        Ok(LoraAdapter {
            dir: dir.to_path_buf(),
            scale,
            pairs,
            rank: cfg.r,
            alpha: cfg.lora_alpha,
            hash: h.finalize().to_hex().to_string(),
        })
    }

    /// A fixed-seed random adapter of the published one's shape on `text`: rank `rank`, alpha
    /// = rank, on every attention and MLP projection of the language model and on
    /// `custom_text_proj` (`dim` outputs), so that the random models' speed figures pay for an
    /// adapter as the real model's do. A is scaled like a weight (std 1/√in), B small, so the
    /// delta moves the layer by about a tenth of itself.
    pub fn random(text: &TextConfig, dim: usize, rank: usize, seed: u64) -> Result<Self> {
        let hd = text.head_dim();
        let (hidden, mlp) = (text.hidden_size, text.intermediate_size);
        let attention = [
            ("self_attn.q_proj", text.num_attention_heads * hd, hidden),
            ("self_attn.k_proj", text.num_key_value_heads * hd, hidden),
            ("self_attn.v_proj", text.num_key_value_heads * hd, hidden),
            ("self_attn.o_proj", hidden, text.num_attention_heads * hd),
            ("mlp.gate_proj", mlp, hidden),
            ("mlp.up_proj", mlp, hidden),
            ("mlp.down_proj", hidden, mlp),
        ];
        let mut shapes: Vec<(String, usize, usize)> = (0..text.num_hidden_layers)
            .flat_map(|l| {
                attention
                    .iter()
                    .map(move |(m, out, inp)| (format!("model.layers.{l}.{m}"), *out, *inp))
            })
            .collect();
        shapes.push(("custom_text_proj".into(), dim, hidden));
        let mut pairs = HashMap::new();
        for (module, out, inp) in shapes {
            let a = random_tensor(seed, &format!("{module}.lora_A"), &[rank, inp], DType::F32)?;
            let b = (random_tensor(seed, &format!("{module}.lora_B"), &[out, rank], DType::F32)?
                * RANDOM_B_AMPLITUDE)?;
            pairs.insert(format!("{module}.weight"), Pair { a, b });
        }
        Ok(LoraAdapter {
            dir: PathBuf::from(format!("random LoRA r={rank}")),
            scale: 1.0,
            pairs,
            rank,
            alpha: rank as f64,
            hash: format!("random-lora-r{rank}-seed{seed}"),
        })
    }

    /// What the index records as this adapter: the dir, or the random adapter's description.
    pub fn name(&self) -> String {
        self.dir.display().to_string()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Canonical names of the weights this adapter changes.
    pub fn targets(&self) -> impl Iterator<Item = &String> {
        self.pairs.keys()
    }

    /// scale · B · A for `canonical` (f32, CPU), if the adapter changes it: the delta merged
    /// into the weight.
    pub fn delta_for(&self, canonical: &str) -> Result<Option<Tensor>> {
        match self.pairs.get(canonical) {
            Some(p) => Ok(Some((p.b.matmul(&p.a)? * self.scale)?)),
            None => Ok(None),
        }
    }

    /// `(A, scale · B)` for `canonical` (f32, CPU), if the adapter changes it: the two thin
    /// factors run beside a quantised weight, `y += (scale·B)·(A·x)`.
    pub fn factors_for(&self, canonical: &str) -> Result<Option<(Tensor, Tensor)>> {
        match self.pairs.get(canonical) {
            Some(p) => Ok(Some((p.a.clone(), (&p.b * self.scale)?))),
            None => Ok(None),
        }
    }
}

/// `base_model.model.<module>.lora_A[.default].weight` → (`<module>`, 'A').
fn split_lora_key(key: &str) -> Option<(String, char)> {
    let k = key.strip_prefix("base_model.model.").unwrap_or(key);
    for (marker, which) in [(".lora_A.", 'A'), (".lora_B.", 'B')] {
        if let Some(pos) = k.find(marker) {
            let tail = &k[pos + marker.len()..];
            if tail == "weight" || tail.ends_with(".weight") {
                return Some((k[..pos].to_string(), which));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_keys_and_targets() {
        assert_eq!(
            split_lora_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
            Some(("model.layers.0.self_attn.q_proj".into(), 'A'))
        );
        assert_eq!(
            split_lora_key("base_model.model.custom_text_proj.lora_B.default.weight"),
            Some(("custom_text_proj".into(), 'B'))
        );
        assert_eq!(split_lora_key("base_model.model.x.weight"), None);
        let r = Targets::Regex(
            fancy_regex::Regex::new(
                r"^(?:(.*(model)(?!.*visual).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$))$",
            )
            .unwrap(),
        );
        assert!(!r.matches("model.visual.blocks.0.mlp.up_proj"));
        assert!(r.matches("model.layers.0.self_attn.q_proj"));
        assert!(r.matches("custom_text_proj"));
        assert!(!r.matches("visual.blocks.0.attn.qkv"));
        let n = Targets::Names(vec!["q_proj".into()]);
        assert!(n.matches("model.layers.0.self_attn.q_proj"));
        assert!(!n.matches("model.layers.0.self_attn.k_proj"));
    }
}
