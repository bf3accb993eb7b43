//! The checkpoint's `config.json`, in both layouts: flat Qwen2.5-VL (text fields at the top level,
//! `vision_config` nested) and nested (`text_config` + `vision_config`, transformers ≥ 4.5x / 5).
//! Vision fields the real file leaves out take the transformers class defaults.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// Qwen2.5 text decoder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Split of the rotary half-dimension between the (t, h, w) position axes.
    pub mrope_section: Vec<usize>,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// Vision tower settings (`Qwen2_5_VLVisionConfig`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VisionConfig {
    #[serde(default = "d_depth")]
    pub depth: usize,
    pub hidden_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_heads")]
    pub num_heads: usize,
    #[serde(default = "d_in_channels", alias = "in_chans")]
    pub in_channels: usize,
    #[serde(default = "d_patch", alias = "spatial_patch_size")]
    pub patch_size: usize,
    #[serde(default = "d_merge")]
    pub spatial_merge_size: usize,
    #[serde(default = "d_temporal")]
    pub temporal_patch_size: usize,
    #[serde(default = "d_window")]
    pub window_size: usize,
    pub out_hidden_size: usize,
    #[serde(default = "d_fullatt")]
    pub fullatt_block_indexes: Vec<usize>,
    /// transformers 5 writes `{rope_type: "axial", rope_theta: 10000}`; older files omit it.
    #[serde(default)]
    pub rope_parameters: Option<Value>,
}

fn d_depth() -> usize {
    32
}
fn d_act() -> String {
    "silu".into()
}
fn d_intermediate() -> usize {
    3420
}
fn d_heads() -> usize {
    16
}
fn d_in_channels() -> usize {
    3
}
fn d_patch() -> usize {
    14
}
fn d_merge() -> usize {
    2
}
fn d_temporal() -> usize {
    2
}
fn d_window() -> usize {
    112
}
fn d_fullatt() -> Vec<usize> {
    vec![7, 15, 23, 31]
}

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// θ of the 2D vision RoPE (10000 unless the config says otherwise).
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|r| r.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0)
    }
    /// Values in one patch row: channels × temporal × patch × patch (1176 for the real model).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
    /// Patches merged into one LM token (4).
    pub fn merge_unit(&self) -> usize {
        self.spatial_merge_size * self.spatial_merge_size
    }
    /// Window side in merged tokens (112 / 2 / 14 = 4).
    pub fn merged_window(&self) -> usize {
        self.window_size / self.spatial_merge_size / self.patch_size
    }
}

/// Token ids the model itself needs (the processor takes its ids from the tokenizer; a mismatch is
/// reported at load).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SpecialIdsInConfig {
    pub image_token_id: Option<u32>,
    pub vision_start_token_id: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColQwenConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub special: SpecialIdsInConfig,
}

/// Raw text fields; `rope_theta` and `mrope_section` may sit in `rope_scaling` (older files) or
/// `rope_parameters` (transformers 5).
#[derive(Deserialize)]
struct RawText {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    intermediate_size: usize,
    vocab_size: usize,
    #[serde(default = "d_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    #[serde(default = "d_text_act")]
    hidden_act: String,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
}
fn d_eps() -> f64 {
    1e-6
}
fn d_text_act() -> String {
    "silu".into()
}

impl ColQwenConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading model config {}", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("in model config {}", path.display()))
    }

    pub fn from_json_str(json: &str) -> Result<Self> {
        let root: Value = serde_json::from_str(json).context("config.json is not valid JSON")?;
        let root_obj = root
            .as_object()
            .context("config.json must be a JSON object")?;
        let (text_value, text_where) = match root_obj.get("text_config") {
            Some(t) if t.is_object() => (t.clone(), "text_config"),
            _ => (root.clone(), "the top level"),
        };
        let raw: RawText = serde_json::from_value(text_value)
            .with_context(|| format!("text model fields at {text_where}"))?;
        let vision_value = root_obj
            .get("vision_config")
            .context("missing field `vision_config` (the vision tower settings)")?;
        let vision: VisionConfig =
            serde_json::from_value(vision_value.clone()).context("field `vision_config`")?;

        let rope_obj = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let rope_theta = raw
            .rope_theta
            .or_else(|| {
                rope_obj
                    .and_then(|r| r.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(1_000_000.0);
        let mrope_section: Vec<usize> = match rope_obj.and_then(|r| r.get("mrope_section")) {
            Some(v) => serde_json::from_value(v.clone())
                .context("field `mrope_section` must be a list of integers")?,
            None => bail!(
                "missing field `rope_scaling.mrope_section` (or `rope_parameters.mrope_section`) at \
                 {text_where}: ColQwen2.5 needs multimodal RoPE"
            ),
        };
        let text = TextConfig {
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            intermediate_size: raw.intermediate_size,
            vocab_size: raw.vocab_size,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            mrope_section,
        };
        let get_id = |k: &str| {
            root_obj
                .get(k)
                .or_else(|| root_obj.get("text_config").and_then(|t| t.get(k)))
                .and_then(Value::as_u64)
                .map(|v| v as u32)
        };
        let special = SpecialIdsInConfig {
            image_token_id: get_id("image_token_id"),
            vision_start_token_id: get_id("vision_start_token_id"),
        };
        let cfg = ColQwenConfig {
            text,
            vision,
            special,
        };
        cfg.validate(&raw.hidden_act)?;
        Ok(cfg)
    }

    fn validate(&self, text_act: &str) -> Result<()> {
        let t = &self.text;
        let v = &self.vision;
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            bail!(
                "field `hidden_size` ({}) must be a multiple of `num_attention_heads` ({})",
                t.hidden_size,
                t.num_attention_heads
            );
        }
        if t.num_key_value_heads == 0
            || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
        {
            bail!(
                "field `num_key_value_heads` ({}) must divide `num_attention_heads` ({})",
                t.num_key_value_heads,
                t.num_attention_heads
            );
        }
        let half = t.head_dim() / 2;
        if t.mrope_section.len() != 3 || t.mrope_section.iter().sum::<usize>() != half {
            bail!(
                "field `mrope_section` {:?} must have 3 entries summing to head_dim/2 = {half}",
                t.mrope_section
            );
        }
        if text_act != "silu" {
            bail!("field `hidden_act` is '{text_act}': only silu is supported");
        }
        if v.hidden_act != "silu" {
            bail!(
                "field `vision_config.hidden_act` is '{}': only silu is supported",
                v.hidden_act
            );
        }
        if v.num_heads == 0
            || !v.hidden_size.is_multiple_of(v.num_heads)
            || !v.head_dim().is_multiple_of(4)
        {
            bail!(
                "field `vision_config.hidden_size` ({}) must be a multiple of `num_heads` ({}) with a head dim divisible by 4",
                v.hidden_size,
                v.num_heads
            );
        }
        if v.out_hidden_size != t.hidden_size {
            bail!(
                "field `vision_config.out_hidden_size` ({}) must equal the text `hidden_size` ({})",
                v.out_hidden_size,
                t.hidden_size
            );
        }
        if v.merged_window() == 0
            || !v
                .window_size
                .is_multiple_of(v.spatial_merge_size * v.patch_size)
        {
            bail!(
                "field `vision_config.window_size` ({}) must be a multiple of spatial_merge_size·patch_size",
                v.window_size
            );
        }
        if let Some(&b) = v.fullatt_block_indexes.iter().find(|&&b| b >= v.depth) {
            bail!(
                "field `vision_config.fullatt_block_indexes` names block {b}, but depth is {}",
                v.depth
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: &str = r#"{
        "hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
        "num_key_value_heads": 2, "intermediate_size": 11008, "vocab_size": 151936,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "hidden_act": "silu",
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "image_token_id": 151655, "vision_start_token_id": 151652,
        "vision_config": {"hidden_size": 1280, "out_hidden_size": 2048, "in_chans": 3,
                          "spatial_patch_size": 14, "tokens_per_second": 2}
    }"#;

    #[test]
    fn flat_layout_fills_vision_defaults() {
        let c = ColQwenConfig::from_json_str(FLAT).unwrap();
        assert_eq!(c.text.head_dim(), 128);
        assert_eq!(c.text.num_key_value_heads, 2);
        assert_eq!(c.vision.depth, 32);
        assert_eq!(c.vision.intermediate_size, 3420);
        assert_eq!(c.vision.fullatt_block_indexes, vec![7, 15, 23, 31]);
        assert_eq!(c.vision.patch_dim(), 1176);
        assert_eq!(c.vision.merged_window(), 4);
        assert_eq!(c.special.image_token_id, Some(151655));
    }

    #[test]
    fn nested_layout_and_rope_parameters() {
        let j = r#"{"text_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 300,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}},
            "vision_config": {"depth": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 40,
            "out_hidden_size": 64, "fullatt_block_indexes": [1]}, "image_token_id": 7}"#;
        let c = ColQwenConfig::from_json_str(j).unwrap();
        assert_eq!(c.text.rope_theta, 10000.0);
        assert_eq!(c.text.mrope_section, vec![2, 3, 3]);
        assert_eq!(c.vision.depth, 2);
        assert_eq!(c.special.image_token_id, Some(7));
    }

    #[test]
    fn missing_field_is_named() {
        let j = FLAT.replace("\"intermediate_size\": 11008,", "");
        let e = format!("{:#}", ColQwenConfig::from_json_str(&j).unwrap_err());
        assert!(e.contains("intermediate_size"), "{e}");
        let j = FLAT.replace("\"out_hidden_size\": 2048,", "");
        let e = format!("{:#}", ColQwenConfig::from_json_str(&j).unwrap_err());
        assert!(
            e.contains("out_hidden_size") && e.contains("vision_config"),
            "{e}"
        );
        let j = FLAT.replace("[16, 24, 24]", "[16, 24, 20]");
        let e = format!("{:#}", ColQwenConfig::from_json_str(&j).unwrap_err());
        assert!(e.contains("mrope_section"), "{e}");
    }
}
