//! What made an index's vectors. An index holds vectors of exactly one model configuration;
//! `search` reloads that model for the query from `model` without being told.

use super::format::{IndexError, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The `--model` string that reloads the query model (a path or a hub id).
    pub model: String,
    pub adapter: Option<String>,
    /// Hash of the config and weight files: the checkpoint's identity, whatever its path.
    pub checkpoint_hash: String,
    pub quant: String,
    /// Which layers `quant` applied to: `all`, or `lm` (the language model only). Indexes made
    /// before the option existed were quantised everywhere, hence the default.
    #[serde(default = "all_layers")]
    pub quant_scope: String,
    pub dtype: String,
    /// How the adapter met quantised weights: `unmerged` (beside them, as the reference
    /// computes it) or `merged` (merged, then quantised; also what dense weights record, where
    /// the two are the same model). None: recorded before the choice existed, when an adapter
    /// was always merged (see [`Provenance::lora_mode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<String>,
    /// The quantised layers' arithmetic when it is not the dtype's: `fp8` (W4A8). None: the
    /// dtype's, which every index made before the choice existed used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    pub max_visual_tokens: usize,
    pub query_prompt: String,
    /// Vector width.
    pub dim: usize,
    /// Random-weight runs make meaningless rankings; never mixed with real vectors.
    pub random_weights: bool,
}

impl Provenance {
    /// What synthetic pages record (benchmarks, self-tests): no model made them, and their
    /// vectors are random.
    pub fn synthetic(dim: usize) -> Provenance {
        Provenance {
            model: "synthetic-colqwen-shaped".into(),
            adapter: None,
            checkpoint_hash: "synthetic".into(),
            quant: "none".into(),
            quant_scope: "all".into(),
            dtype: "f16".into(),
            lora: None,
            compute: None,
            max_visual_tokens: 768,
            query_prompt: String::new(),
            dim,
            random_weights: true,
        }
    }

    /// How the adapter met the weights: `none` without one, else `unmerged` or `merged`
    /// (indexes made before the choice existed merged it).
    pub fn lora_mode(&self) -> &str {
        match (&self.adapter, &self.lora) {
            (None, _) => NO_ADAPTER,
            (Some(_), Some(mode)) => mode,
            (Some(_), None) => "merged",
        }
    }

    /// The quantised layers' arithmetic: `dtype` (the dtype's own GEMMs) or `fp8`.
    pub fn compute(&self) -> &str {
        self.compute.as_deref().unwrap_or(DTYPE_COMPUTE)
    }

    /// One line naming everything that decides the vectors.
    pub fn describe(&self) -> String {
        format!(
            "model {} (checkpoint {}{}), adapter {}, quant {}{}, dtype {}{}, max visual tokens {}, dim {}, query prompt {:?}{}",
            self.model,
            short(&self.checkpoint_hash),
            if self.checkpoint_hash.len() > 12 { "…" } else { "" },
            match &self.adapter {
                Some(a) => format!("{a} ({})", self.lora_mode()),
                None => NO_ADAPTER.to_string(),
            },
            self.quant,
            if self.quant_scope == ALL_LAYERS {
                String::new()
            } else {
                format!(" (scope {})", self.quant_scope)
            },
            self.dtype,
            match &self.compute {
                Some(c) => format!(" (compute {c})"),
                None => String::new(),
            },
            self.max_visual_tokens,
            self.dim,
            self.query_prompt,
            if self.random_weights { ", RANDOM WEIGHTS" } else { "" },
        )
    }

    /// Vectors from `other` may go into an index made by `self` only if everything that shapes
    /// them matches; the `model` string itself may differ (the same checkpoint at another path).
    pub fn check_compatible(&self, other: &Provenance, index: &std::path::Path) -> Result<()> {
        let same = self.checkpoint_hash == other.checkpoint_hash
            && self.adapter == other.adapter
            && self.lora_mode() == other.lora_mode()
            && self.quant == other.quant
            && self.quant_scope == other.quant_scope
            && self.dtype == other.dtype
            && self.compute() == other.compute()
            && self.max_visual_tokens == other.max_visual_tokens
            && self.query_prompt == other.query_prompt
            && self.dim == other.dim
            && self.random_weights == other.random_weights;
        if same {
            return Ok(());
        }
        Err(IndexError::ModelMismatch(format!(
            "the index at {} holds vectors from {}; this run would add vectors from {}. Vectors of \
             different models cannot be mixed: use the index's model settings or another --index folder",
            index.display(),
            self.describe(),
            other.describe()
        )))
    }
}

/// The LoRA mode of vectors made without an adapter.
pub const NO_ADAPTER: &str = "none";

/// The compute recorded when none is: the dtype's own GEMMs.
pub const DTYPE_COMPUTE: &str = "dtype";

/// The quantisation scope recorded when none is: every linear layer.
pub const ALL_LAYERS: &str = "all";

fn all_layers() -> String {
    ALL_LAYERS.into()
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_adapter(lora: Option<&str>) -> Provenance {
        Provenance {
            model: "vidore/colqwen2.5-base".into(),
            adapter: Some("vidore/colqwen2.5-v0.2".into()),
            checkpoint_hash: "c0ffee".into(),
            quant: "nf4".into(),
            quant_scope: ALL_LAYERS.into(),
            dtype: "bf16".into(),
            lora: lora.map(String::from),
            compute: None,
            max_visual_tokens: 768,
            query_prompt: "Query: {query}".into(),
            dim: 128,
            random_weights: false,
        }
    }

    /// An index made when the adapter was always merged records no mode: it reads as merged,
    /// says so, and refuses vectors of the (now default) unmerged form with both descriptions.
    #[test]
    fn indexes_from_before_the_lora_mode_read_as_merged() {
        let mut json = serde_json::to_value(with_adapter(Some("unmerged"))).unwrap();
        json.as_object_mut().unwrap().remove("lora");
        let old: Provenance = serde_json::from_value(json).unwrap();
        assert_eq!(old.lora, None);
        assert_eq!(old.lora_mode(), "merged");
        assert!(
            old.describe().contains("v0.2 (merged)"),
            "{}",
            old.describe()
        );
        assert!(old
            .check_compatible(&with_adapter(Some("merged")), "ix".as_ref())
            .is_ok());
        let e = old
            .check_compatible(&with_adapter(Some("unmerged")), "ix".as_ref())
            .unwrap_err()
            .to_string();
        assert!(e.contains("(merged)") && e.contains("(unmerged)"), "{e}");
        let none = Provenance {
            adapter: None,
            ..old
        };
        assert_eq!(none.lora_mode(), NO_ADAPTER);
    }

    /// Indexes made before the compute choice read as the dtype's own GEMMs; fp8 vectors are
    /// named as such and never mixed with them.
    #[test]
    fn compute_is_recorded_and_fp8_vectors_are_kept_apart() {
        let older = with_adapter(Some("unmerged"));
        let json = serde_json::to_value(&older).unwrap();
        assert!(json.get("compute").is_none(), "absent when the dtype's");
        assert_eq!(older.compute(), DTYPE_COMPUTE);
        let fp8 = Provenance {
            compute: Some("fp8".into()),
            ..older.clone()
        };
        assert_eq!(fp8.compute(), "fp8");
        assert!(fp8.describe().contains("compute fp8"));
        let err = older
            .check_compatible(&fp8, std::path::Path::new("/idx"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("compute fp8"), "{err}");
        assert!(fp8
            .check_compatible(&fp8.clone(), std::path::Path::new("/idx"))
            .is_ok());
    }
}
