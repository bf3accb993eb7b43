//! Text side of the processor: tokenizer, the image and query prompts, left padding, and the
//! M-RoPE position ids exactly as transformers' `Qwen2_5_VLModel.get_rope_index`.

use anyhow::{bail, Context, Result};
use std::path::Path;
use tokenizers::Tokenizer;

/// Special token ids, read from the tokenizer (fixtures remap them, so nothing is hard-coded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    pub endoftext: u32,
    pub vision_start: u32,
    pub image_pad: u32,
}

/// The image prompt colpali-engine uses for ColQwen2.5; `<|image_pad|>` expands per image.
pub const IMAGE_PROMPT: &str =
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>";

/// How queries are written before tokenising.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryPrompt {
    /// "Query: " for colqwen2.5-v0.2 (what it was trained with; colpali-engine ≥ 0.3.13 uses "").
    pub prefix: String,
    /// Appended `augmentation_count` times (10 × `<|endoftext|>`).
    pub augmentation_token: String,
    pub augmentation_count: usize,
}

impl Default for QueryPrompt {
    fn default() -> Self {
        QueryPrompt {
            prefix: "Query: ".into(),
            augmentation_token: "<|endoftext|>".into(),
            augmentation_count: 10,
        }
    }
}

impl QueryPrompt {
    pub fn text(&self, query: &str) -> String {
        format!(
            "{}{}{}",
            self.prefix,
            query,
            self.augmentation_token.repeat(self.augmentation_count)
        )
    }
}

/// A left-padded batch with its attention mask and M-RoPE positions.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u32>>,
    /// positions[row][axis t/h/w][token].
    pub positions: Vec<[Vec<i64>; 3]>,
}

impl TokenBatch {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map(Vec::len).unwrap_or(0)
    }
    /// Index of the first real token of `row` (the number of pads before it).
    pub fn pad_len(&self, row: usize) -> usize {
        self.attention_mask[row]
            .iter()
            .take_while(|&&m| m == 0)
            .count()
    }
}

pub struct Processor {
    tokenizer: Tokenizer,
    pub special: SpecialTokens,
    pub query: QueryPrompt,
    /// Patches per side merged into one token (2).
    pub merge: usize,
    image_prompt_ids: Vec<u32>,
}

impl Processor {
    pub fn load(tokenizer_json: &Path, merge: usize, query: QueryPrompt) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(tokenizer_json)
            .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", tokenizer_json.display()))?;
        let id = |t: &str| {
            tokenizer.token_to_id(t).with_context(|| {
                format!(
                    "tokenizer {} has no `{t}` token (not a Qwen2 tokenizer?)",
                    tokenizer_json.display()
                )
            })
        };
        let special = SpecialTokens {
            endoftext: id("<|endoftext|>")?,
            vision_start: id("<|vision_start|>")?,
            image_pad: id("<|image_pad|>")?,
        };
        let mut p = Processor {
            tokenizer,
            special,
            query,
            merge,
            image_prompt_ids: Vec::new(),
        };
        p.image_prompt_ids = p.encode(IMAGE_PROMPT)?;
        if p.image_prompt_ids
            .iter()
            .filter(|&&t| t == special.image_pad)
            .count()
            != 1
        {
            bail!(
                "tokenizer {} does not keep `<|image_pad|>` as one special token",
                tokenizer_json.display()
            );
        }
        Ok(p)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("tokenising {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Unpadded ids of one page: the image prompt with `<|image_pad|>` repeated once per merged
    /// token (grid_h·grid_w / merge²).
    pub fn image_ids(&self, grid: [u32; 3]) -> Vec<u32> {
        let n = (grid[0] * grid[1] * grid[2]) as usize / (self.merge * self.merge);
        let mut out = Vec::with_capacity(self.image_prompt_ids.len() + n);
        for &t in &self.image_prompt_ids {
            if t == self.special.image_pad {
                out.extend(std::iter::repeat_n(t, n));
            } else {
                out.push(t);
            }
        }
        out
    }

    /// Prompt tokens before the first image token of a page.
    pub fn tokens_before_image(&self) -> usize {
        self.image_prompt_ids
            .iter()
            .position(|&t| t == self.special.image_pad)
            .unwrap_or(0)
    }

    /// Unpadded ids of one query (prefix + text + augmentation tokens).
    pub fn query_ids(&self, query: &str) -> Result<Vec<u32>> {
        self.encode(&self.query.text(query))
    }

    /// Left-pads `seqs` with `<|endoftext|>` and computes positions; `grids` lists the images
    /// in the order their `<|image_pad|>` runs appear, row after row.
    pub fn batch(&self, seqs: Vec<Vec<u32>>, grids: &[[u32; 3]]) -> Result<TokenBatch> {
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(seqs.len());
        let mut attention_mask = Vec::with_capacity(seqs.len());
        for s in seqs {
            let pad = len - s.len();
            let mut ids = vec![self.special.endoftext; pad];
            ids.extend_from_slice(&s);
            let mut m = vec![0u32; pad];
            m.extend(std::iter::repeat_n(1u32, s.len()));
            input_ids.push(ids);
            attention_mask.push(m);
        }
        let positions = self.rope_positions(&input_ids, &attention_mask, grids)?;
        Ok(TokenBatch {
            input_ids,
            attention_mask,
            positions,
        })
    }

    /// `get_rope_index` for still images: over each row's real tokens, text runs get the same
    /// consecutive position on all three axes, continuing from max(previous)+1; an image's tokens
    /// get (t = 0, row, col) on the merged grid plus the start offset; pads get 1.
    pub fn rope_positions(
        &self,
        ids: &[Vec<u32>],
        mask: &[Vec<u32>],
        grids: &[[u32; 3]],
    ) -> Result<Vec<[Vec<i64>; 3]>> {
        let mut next_grid = 0usize;
        let mut out = Vec::with_capacity(ids.len());
        for (row, row_mask) in ids.iter().zip(mask) {
            let real: Vec<u32> = row
                .iter()
                .zip(row_mask)
                .filter(|(_, &m)| m == 1)
                .map(|(&t, _)| t)
                .collect();
            let n_images = real
                .windows(2)
                .filter(|w| w[0] == self.special.vision_start && w[1] == self.special.image_pad)
                .count();
            let mut pos: [Vec<i64>; 3] = Default::default();
            let mut next_start = 0i64; // max(previous) + 1
            let mut st = 0usize;
            for _ in 0..n_images {
                let ed = st
                    + real[st..]
                        .iter()
                        .position(|&t| t == self.special.image_pad)
                        .context("image token vanished while computing positions")?;
                let [t, h, w] = *grids.get(next_grid).with_context(|| {
                    format!(
                        "the batch has more images than grids ({} given)",
                        grids.len()
                    )
                })?;
                next_grid += 1;
                let (gt, gh, gw) = (t as usize, h as usize / self.merge, w as usize / self.merge);
                let text_len = ed - st;
                for i in 0..text_len as i64 {
                    for p in pos.iter_mut() {
                        p.push(next_start + i);
                    }
                }
                let base = next_start + text_len as i64;
                let mut max_pos = base;
                for _ti in 0..gt {
                    // Still images: the temporal index is scaled by 0 seconds per grid.
                    for r in 0..gh {
                        for c in 0..gw {
                            pos[0].push(base);
                            pos[1].push(base + r as i64);
                            pos[2].push(base + c as i64);
                            max_pos = max_pos.max(base + r.max(c) as i64);
                        }
                    }
                }
                next_start = max_pos + 1;
                st = ed + gt * gh * gw;
                if st > real.len() {
                    bail!(
                        "image grid {:?} needs more `<|image_pad|>` tokens than the row has",
                        [t, h, w]
                    );
                }
            }
            for i in 0..(real.len() - st) as i64 {
                for p in pos.iter_mut() {
                    p.push(next_start + i);
                }
            }
            // Scatter into the padded row: pads get 1.
            let mut full: [Vec<i64>; 3] = Default::default();
            for (axis, f) in full.iter_mut().enumerate() {
                let mut it = pos[axis].iter();
                *f = row_mask
                    .iter()
                    .map(|&m| if m == 1 { *it.next().unwrap_or(&1) } else { 1 })
                    .collect();
            }
            out.push(full);
        }
        if next_grid != grids.len() {
            bail!(
                "{} image grids given but the prompts hold {} images",
                grids.len(),
                next_grid
            );
        }
        Ok(out)
    }
}
