//! `pagesight embed`: images and queries → vectors in a safetensors file (parity checks,
//! debugging, scripting).

use super::args::ModelArgs;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use pagesight_model::colqwen::processor::QueryPrompt;
use pagesight_model::colqwen::{ColQwen, RANDOM_WARNING};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// The model and how it computes: the same flags as `ingest` (precision defaults to the
    /// device's best; `--dtype f32 --quant none` for the reference's dense model).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Page images (PNG/JPEG); all are embedded in one padded batch.
    #[arg(long = "image", num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// A query (repeat the flag for several).
    #[arg(long = "query")]
    pub queries: Vec<String>,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Text before each query ("Query: " is what colqwen2.5-v0.2 was trained with).
    #[arg(long, default_value = "Query: ")]
    pub query_prefix: String,
    /// Also write image_pixel_values.{i} and image_grid_thw.{i}.
    #[arg(long)]
    pub dump_inputs: bool,
}

pub fn run(args: EmbedArgs) -> Result<()> {
    if args.images.is_empty() && args.queries.is_empty() {
        bail!("nothing to embed: give --image and/or --query");
    }
    let settings = args.model.settings();
    let mut model = ColQwen::load(&settings)?;
    model.set_query_prompt(QueryPrompt {
        prefix: args.query_prefix.clone(),
        ..QueryPrompt::default()
    });
    if model.is_random() {
        eprintln!("warning: {}: {RANDOM_WARNING}", settings.model);
    }
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    let dim = model.embedding_dim();

    if !args.images.is_empty() {
        let mut rows = Vec::new();
        let mut grids = Vec::new();
        for (i, path) in args.images.iter().enumerate() {
            let img = image::open(path)
                .with_context(|| format!("reading image {}", path.display()))?
                .to_rgb8();
            let (pixels, grid) = pagesight_model::preprocess_rgb(
                img.as_raw(),
                img.height(),
                img.width(),
                &model.preprocess_config(),
            )
            .with_context(|| format!("preprocessing {}", path.display()))?;
            let n_patches = (grid[0] * grid[1] * grid[2]) as usize;
            let row_len = pixels.len() / n_patches.max(1);
            let t = Tensor::from_vec(pixels, (n_patches, row_len), &Device::Cpu)?;
            if args.dump_inputs {
                out.insert(format!("image_pixel_values.{i}"), t.clone());
                let g: Vec<i64> = grid.iter().map(|&x| x as i64).collect();
                out.insert(
                    format!("image_grid_thw.{i}"),
                    Tensor::from_vec(g, 3, &Device::Cpu)?,
                );
            }
            rows.push(t);
            grids.push(grid);
        }
        let pixels = Tensor::cat(&rows, 0)?;
        let pages = model.embed_images(&pixels, &grids)?;
        for (i, (page, grid)) in pages.iter().zip(&grids).enumerate() {
            out.insert(
                format!("image.{i}"),
                Tensor::from_vec(page.vectors.clone(), (page.n_tokens, dim), &Device::Cpu)?,
            );
            out.insert(
                format!("image_input_ids.{i}"),
                ids_tensor(&model.image_input_ids(*grid))?,
            );
        }
    }
    if !args.queries.is_empty() {
        let vectors = model.embed_queries(&args.queries)?;
        for (i, (q, v)) in args.queries.iter().zip(vectors).enumerate() {
            let n = v.len() / dim;
            out.insert(
                format!("query.{i}"),
                Tensor::from_vec(v, (n, dim), &Device::Cpu)?,
            );
            out.insert(
                format!("query_input_ids.{i}"),
                ids_tensor(&model.query_input_ids(q)?)?,
            );
        }
    }
    let id = model.identity();
    let mut meta = std::collections::HashMap::new();
    meta.insert("model".to_string(), serde_json::to_string(&id)?);
    if id.random {
        meta.insert("warning".to_string(), RANDOM_WARNING.to_string());
    }
    write_safetensors(&out, meta, &args.out)?;
    eprintln!("wrote {} tensors to {}", out.len(), args.out.display());
    Ok(())
}

fn ids_tensor(ids: &[u32]) -> Result<Tensor> {
    let v: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    Ok(Tensor::from_vec(v, ids.len(), &Device::Cpu)?)
}

/// Writes tensors (f32 / i64, CPU) with string metadata.
pub fn write_safetensors(
    tensors: &BTreeMap<String, Tensor>,
    metadata: std::collections::HashMap<String, String>,
    path: &std::path::Path,
) -> Result<()> {
    let mut data = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(&Device::Cpu)?.contiguous()?;
        let (dtype, bytes) = match t.dtype() {
            candle_core::DType::F32 => (
                safetensors::Dtype::F32,
                bytemuck::cast_slice::<f32, u8>(&t.flatten_all()?.to_vec1::<f32>()?).to_vec(),
            ),
            candle_core::DType::I64 => (
                safetensors::Dtype::I64,
                bytemuck::cast_slice::<i64, u8>(&t.flatten_all()?.to_vec1::<i64>()?).to_vec(),
            ),
            other => bail!("tensor {name} has dtype {other:?}; only f32 and i64 are written"),
        };
        data.push((name.clone(), dtype, t.dims().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, d, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b)?,
            ))
        })
        .collect::<Result<_>>()?;
    safetensors::tensor::serialize_to_file(views, Some(metadata), path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
