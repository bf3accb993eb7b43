//! The quantised-weight cache file: one safetensors file holding the quantised state of every
//! quantised linear layer of a model, so a later load reads it instead of quantising again.
//!
//! Layout: for a layer `name`, the tensors `name/packed` (U8, NF4 codes two a byte),
//! `name/absmax` (F32) or `name/absmax_codes` (U8) + `name/absmax2` (F32) + `name/absmax_offset`
//! (F32 [1]) for double quantisation, `name/ggml` (U8, candle's GGML blocks), and `name/bias` in
//! the model dtype. The header's metadata holds the format, the [`CacheKey`] the file was made
//! under, a fingerprint of the checkpoint files, and a table of the layers with a blake3 checksum
//! of each layer's bytes. A file whose format, key or fingerprint differs is never used; a layer
//! whose checksum or shape differs is never used either.
//!
//! Files are written in a work folder, fsynced and renamed over the old one, so a reader (which
//! memory-maps the file) only ever sees a complete file, and never one truncated under it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorInfo, TensorView};
use serde::{Deserialize, Serialize};

use super::nf4::{AbsmaxState, Nf4Weight};
use crate::settings::Quant;

/// Bumped whenever quantisation or this layout changes, so older files are never read.
pub const CACHE_FORMAT: &str = "pagesight-quant-cache/1";

/// Everything that decides the quantised weights: a file made under another key is never used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The model's checkpoint identity (the one the index records).
    pub checkpoint_hash: String,
    pub adapter_hash: Option<String>,
    /// The dtype the dense weights were loaded in before quantising (codes differ per dtype).
    pub dtype: String,
    pub quant: Quant,
    pub nf4_blocksize: usize,
    pub double_quant: bool,
    /// Which layers are quantised (`QuantScope`).
    pub scope: String,
    /// The program version: quantisation code may change between versions.
    pub pagesight_version: String,
}

impl CacheKey {
    /// `quant-<first 20 hex digits of blake3(key)>.safetensors`.
    pub fn file_name(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let h = blake3::hash(json.as_bytes()).to_hex();
        format!("quant-{}.safetensors", &h[..20])
    }
}

/// A quantised layer's state, shared with the live layer (writing copies nothing).
#[derive(Clone, Debug)]
pub enum LayerState {
    Nf4(Arc<Nf4Weight>),
    Ggml(Arc<QTensor>),
}

#[derive(Clone, Debug)]
pub struct CachedLayer {
    pub name: String,
    pub state: LayerState,
    pub bias: Option<Tensor>,
}

/// One layer in the header's table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LayerEntry {
    name: String,
    /// `nf4`, or the GGML format (`Q4K`, `Q4_0`).
    storage: String,
    /// `(out_features, in_features)`.
    shape: (usize, usize),
    /// NF4: the dtype the weight came in, and its block size.
    weight_dtype: Option<String>,
    blocksize: Option<usize>,
    /// The layer's tensors (suffixes after `name/`), in checksum order.
    parts: Vec<String>,
    /// blake3 over every part's suffix, length and bytes, in order.
    blake3: String,
}

/// One tensor of a layer, about to be written or just read.
struct Part<'a> {
    suffix: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Cow<'a, [u8]>,
}

fn st_dtype(d: DType) -> Result<Dtype> {
    Ok(match d {
        DType::F32 => Dtype::F32,
        DType::BF16 => Dtype::BF16,
        DType::F16 => Dtype::F16,
        DType::U8 => Dtype::U8,
        other => bail!("the quantised-weight cache does not store {other:?} tensors"),
    })
}

fn candle_dtype(d: Dtype) -> Result<DType> {
    Ok(match d {
        Dtype::F32 => DType::F32,
        Dtype::BF16 => DType::BF16,
        Dtype::F16 => DType::F16,
        Dtype::U8 => DType::U8,
        other => bail!("unexpected tensor dtype {other:?}"),
    })
}

/// The GGML formats `--quant q4k` produces, by their `Debug` names.
fn ggml_format(name: &str) -> Option<GgmlDType> {
    [GgmlDType::Q4K, GgmlDType::Q4_0]
        .into_iter()
        .find(|f| format!("{f:?}") == name)
}

fn f32_part<'a>(suffix: &'static str, values: &'a [f32]) -> Part<'a> {
    Part {
        suffix,
        dtype: Dtype::F32,
        shape: vec![values.len()],
        bytes: Cow::Borrowed(bytemuck::cast_slice(values)),
    }
}

fn u8_part<'a>(suffix: &'static str, bytes: Cow<'a, [u8]>) -> Part<'a> {
    Part {
        suffix,
        dtype: Dtype::U8,
        shape: vec![bytes.len()],
        bytes,
    }
}

/// A tensor's bytes on the host, in its dtype.
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let flat = t.to_device(&Device::Cpu)?.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => bytemuck::cast_slice(&flat.to_vec1::<f32>()?).to_vec(),
        DType::BF16 => bytemuck::cast_slice(&flat.to_vec1::<half::bf16>()?).to_vec(),
        DType::F16 => bytemuck::cast_slice(&flat.to_vec1::<half::f16>()?).to_vec(),
        other => bail!("bias of dtype {other:?} cannot be cached"),
    })
}

fn checksum(parts: &[Part<'_>]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.suffix.as_bytes());
        h.update(&(p.bytes.len() as u64).to_le_bytes());
        h.update(&p.bytes);
    }
    h.finalize().to_hex().to_string()
}

impl CachedLayer {
    /// The layer's tensors and its table entry.
    fn parts(&self) -> Result<(LayerEntry, Vec<Part<'_>>)> {
        let mut parts = Vec::new();
        let (storage, shape, weight_dtype, blocksize) = match &self.state {
            LayerState::Nf4(w) => {
                parts.push(u8_part("packed", Cow::Borrowed(&w.packed)));
                match &w.absmax {
                    AbsmaxState::Plain(a) => parts.push(f32_part("absmax", a)),
                    AbsmaxState::Double {
                        codes,
                        absmax2,
                        offset,
                    } => {
                        parts.push(u8_part("absmax_codes", Cow::Borrowed(codes)));
                        parts.push(f32_part("absmax2", absmax2));
                        parts.push(f32_part("absmax_offset", std::slice::from_ref(offset)));
                    }
                }
                let dtype = w.dtype.as_str().to_string();
                ("nf4".to_string(), w.shape, Some(dtype), Some(w.blocksize))
            }
            LayerState::Ggml(q) => {
                parts.push(u8_part("ggml", q.data()?));
                (format!("{:?}", q.dtype()), q.shape().dims2()?, None, None)
            }
        };
        if let Some(b) = &self.bias {
            parts.push(Part {
                suffix: "bias",
                dtype: st_dtype(b.dtype())?,
                shape: b.dims().to_vec(),
                bytes: Cow::Owned(tensor_bytes(b)?),
            });
        }
        let entry = LayerEntry {
            name: self.name.clone(),
            storage,
            shape,
            weight_dtype,
            blocksize,
            parts: parts.iter().map(|p| p.suffix.to_string()).collect(),
            blake3: checksum(&parts),
        };
        Ok((entry, parts))
    }
}

/// Writes `layers` to `path` atomically (written in a work folder next to it, fsync, rename,
/// fsync the folder). Returns the file's size in bytes.
pub fn write(path: &Path, key: &CacheKey, source: &str, layers: &[CachedLayer]) -> Result<u64> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent folder", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "creating the quantised-weight cache folder {}",
            dir.display()
        )
    })?;
    let mut entries = Vec::with_capacity(layers.len());
    let mut all_parts = Vec::new();
    for layer in layers {
        let (entry, parts) = layer
            .parts()
            .with_context(|| format!("preparing layer {} for the cache", layer.name))?;
        for p in parts {
            all_parts.push((format!("{}/{}", layer.name, p.suffix), p));
        }
        entries.push(entry);
    }
    let views = all_parts
        .iter()
        .map(|(name, p)| {
            Ok((
                name.clone(),
                TensorView::new(p.dtype, p.shape.clone(), &p.bytes)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), CACHE_FORMAT.to_string()),
        ("key".to_string(), serde_json::to_string(key)?),
        ("source".to_string(), source.to_string()),
        ("layers".to_string(), serde_json::to_string(&entries)?),
    ]);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_abandoned_writes(dir);
    // A private folder, so that whatever a killed writer leaves (safetensors' own temp file
    // included) is found and removed by the next writer.
    static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = dir.join(format!("{WRITING_PREFIX}{}-{n}", std::process::id()));
    let tmp = work.join(&file_name);
    let written = (|| -> Result<u64> {
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        safetensors::serialize_to_file(views, Some(metadata), &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        let len = std::fs::metadata(&tmp)
            .with_context(|| format!("reading the size of {}", tmp.display()))?
            .len();
        pagesight_common::fs::persist(&tmp, path)?;
        Ok(len)
    })();
    let _ = std::fs::remove_dir_all(&work);
    written
}

/// The folder a write works in: this prefix, the writer's process id, `-` and a count.
pub const WRITING_PREFIX: &str = ".writing-";

/// Removes what killed writers left behind (gigabytes each): the work folders of processes that
/// no longer run. A live writer's folder is left alone.
fn remove_abandoned_writes(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(WRITING_PREFIX)
            .and_then(|p| p.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_runs(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(unix)]
fn process_runs(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_runs(_pid: u32) -> bool {
    true // no cheap check: leave the file
}

/// A cache file opened and checked against the key and fingerprint the model expects.
pub struct CacheFile {
    path: PathBuf,
    map: memmap2::Mmap,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    entries: HashMap<String, LayerEntry>,
}

impl CacheFile {
    /// Opens `path`: `Ok(None)` when there is no such file; an error saying what is wrong when
    /// the file is unreadable, truncated, of another format, made under another key or from
    /// other checkpoint files.
    pub fn open(path: &Path, key: &CacheKey, source: &str) -> Result<Option<CacheFile>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        // SAFETY: mapped read-only; pagesight replaces cache files by rename, never in place.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("memory-mapping {}", path.display()))?;
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| anyhow::anyhow!("not a complete safetensors file ({e})"))?;
        let info = meta.metadata().clone().unwrap_or_default();
        let field = |k: &str| info.get(k).map(String::as_str).unwrap_or("");
        ensure!(
            field("format") == CACHE_FORMAT,
            "format {:?}, expected {CACHE_FORMAT:?}",
            field("format")
        );
        let stored_key: CacheKey =
            serde_json::from_str(field("key")).context("unreadable cache key")?;
        ensure!(
            &stored_key == key,
            "made for other model settings ({stored_key:?})"
        );
        ensure!(
            field("source") == source,
            "the checkpoint files changed since it was written"
        );
        let entries: Vec<LayerEntry> =
            serde_json::from_str(field("layers")).context("unreadable layer table")?;
        let tensors = meta
            .tensors()
            .into_iter()
            .map(|(name, t)| (name, t.clone()))
            .collect();
        Ok(Some(CacheFile {
            path: path.to_path_buf(),
            map,
            data_start: 8 + header_len,
            tensors,
            entries: entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the layers the file holds.
    pub fn layer_names(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn part(&self, layer: &str, suffix: &'static str) -> Result<Part<'_>> {
        let name = format!("{layer}/{suffix}");
        let t = self
            .tensors
            .get(&name)
            .with_context(|| format!("tensor {name} is missing"))?;
        let (start, end) = t.data_offsets;
        Ok(Part {
            suffix,
            dtype: t.dtype,
            shape: t.shape.clone(),
            bytes: Cow::Borrowed(&self.map[self.data_start + start..self.data_start + end]),
        })
    }

    /// Reads layer `name`, checking its checksum and that it is `shape` (out, in) with a bias
    /// exactly when `with_bias`; the bias goes to `device`.
    pub fn read_layer(
        &self,
        name: &str,
        shape: (usize, usize),
        with_bias: bool,
        device: &Device,
    ) -> Result<(LayerState, Option<Tensor>)> {
        let e = self
            .entries
            .get(name)
            .with_context(|| format!("layer {name} is not in the cache"))?;
        ensure!(
            e.shape == shape,
            "layer {name} is {:?} in the cache, the model expects {shape:?}",
            e.shape
        );
        const SUFFIXES: [&str; 7] = [
            "packed",
            "absmax",
            "absmax_codes",
            "absmax2",
            "absmax_offset",
            "ggml",
            "bias",
        ];
        let parts = e
            .parts
            .iter()
            .map(|s| {
                let suffix = SUFFIXES
                    .into_iter()
                    .find(|k| k == s)
                    .with_context(|| format!("unknown part {s:?} of layer {name}"))?;
                self.part(name, suffix)
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            checksum(&parts) == e.blake3,
            "layer {name} fails its checksum (the file is corrupt)"
        );
        let get = |suffix: &str| parts.iter().find(|p| p.suffix == suffix);
        let bias = match (get("bias"), with_bias) {
            (Some(p), true) => {
                ensure!(
                    p.shape == [shape.0],
                    "bias of {name} has shape {:?}",
                    p.shape
                );
                Some(Tensor::from_raw_buffer(
                    &p.bytes,
                    candle_dtype(p.dtype)?,
                    &p.shape,
                    device,
                )?)
            }
            (None, false) => None,
            (b, _) => bail!(
                "layer {name} has {} bias in the cache, the model expects {}",
                if b.is_some() { "a" } else { "no" },
                if with_bias { "one" } else { "none" }
            ),
        };
        let f32s = |p: &Part<'_>| -> Result<Vec<f32>> {
            ensure!(p.dtype == Dtype::F32, "{name}/{} is not F32", p.suffix);
            Ok(bytemuck::pod_collect_to_vec(&p.bytes))
        };
        let state = if e.storage == "nf4" {
            let absmax = match (get("absmax"), get("absmax_codes"), get("absmax2")) {
                (Some(a), None, None) => AbsmaxState::Plain(f32s(a)?),
                (None, Some(codes), Some(a2)) => {
                    let offset = get("absmax_offset")
                        .map(f32s)
                        .transpose()?
                        .and_then(|o| o.first().copied())
                        .with_context(|| format!("layer {name} lacks its absmax offset"))?;
                    AbsmaxState::Double {
                        codes: codes.bytes.to_vec(),
                        absmax2: f32s(a2)?,
                        offset,
                    }
                }
                _ => bail!("layer {name} has no consistent absmax state"),
            };
            let packed = get("packed")
                .with_context(|| format!("layer {name} lacks its codes"))?
                .bytes
                .to_vec();
            let blocksize = e.blocksize.unwrap_or(0);
            let n = shape.0 * shape.1;
            ensure!(
                blocksize >= 2
                    && packed.len() == n.div_ceil(2)
                    && absmax.block_count() == n.div_ceil(blocksize),
                "layer {name}: {} code bytes and {} blocks of {blocksize} do not fit {shape:?}",
                packed.len(),
                absmax.block_count()
            );
            let dtype = e.weight_dtype.as_deref().unwrap_or("");
            LayerState::Nf4(Arc::new(Nf4Weight {
                packed,
                absmax,
                shape,
                dtype: dtype
                    .parse()
                    .map_err(|_| anyhow::anyhow!("layer {name}: unknown dtype {dtype:?}"))?,
                blocksize,
            }))
        } else {
            let format = ggml_format(&e.storage)
                .with_context(|| format!("layer {name}: unknown storage {:?}", e.storage))?;
            let raw = get("ggml").with_context(|| format!("layer {name} lacks its blocks"))?;
            // candle reads the blocks through a typed pointer: give it 8-byte-aligned bytes.
            let mut aligned = vec![0u64; raw.bytes.len().div_ceil(8)];
            let aligned_bytes =
                &mut bytemuck::cast_slice_mut::<u64, u8>(&mut aligned)[..raw.bytes.len()];
            aligned_bytes.copy_from_slice(&raw.bytes);
            let expected = shape.0 * shape.1 / format.block_size() * format.type_size();
            ensure!(
                aligned_bytes.len() == expected,
                "layer {name}: {} bytes of {format:?}, {shape:?} needs {expected}",
                aligned_bytes.len()
            );
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                format,
                aligned_bytes,
                vec![shape.0, shape.1],
                device,
            )?;
            LayerState::Ggml(Arc::new(q))
        };
        Ok((state, bias))
    }
}
