//! One model load's use of the quantised-weight cache: each quantised layer is read from the
//! cache file when it holds a sound copy, else quantised as usual; at the end of the load the
//! file is (re)written when any layer had to be quantised. Nothing here can make a load fail or
//! give a wrong model: a cache that cannot be used is reported, bypassed and rewritten.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use candle_core::Device;

use super::cache_file::{self, CacheFile, CacheKey, CachedLayer, LayerState};
use super::context::{LayerStorage, QuantContext};
use super::kquant::KQuantLinear;
use super::linear::QLinear;
use super::nf4_linear::Nf4Linear;

/// What the cache did during one load.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantCacheReport {
    /// The cache file of this model and these quantisation settings.
    pub file: PathBuf,
    /// Quantised layers read from the cache file.
    pub layers_read: usize,
    /// Quantised layers quantised during this load (the cache was missing or not usable).
    pub layers_quantised: usize,
    /// Why the cache was not (fully) used, when it existed but could not be trusted; each
    /// message names the file. Empty when the cache was used or simply did not exist yet.
    pub warnings: Vec<String>,
    /// Bytes written when the file was (re)written at the end of this load.
    pub bytes_written: Option<u64>,
    /// Why writing failed, naming the file (the model is unaffected).
    pub write_error: Option<String>,
    /// Seconds spent reading (checksums included) and writing the file.
    pub read_s: f64,
    pub write_s: f64,
}

impl QuantCacheReport {
    /// Every quantised layer came from the cache: nothing was quantised.
    pub fn used(&self) -> bool {
        self.layers_read > 0 && self.layers_quantised == 0
    }

    /// One line for logs and the command line.
    pub fn describe(&self) -> String {
        let mut s = if self.used() {
            format!(
                "quantised weights read from the cache {} ({} layers, {:.2} s)",
                self.file.display(),
                self.layers_read,
                self.read_s
            )
        } else {
            format!(
                "{} layers quantised at load ({} read from the cache)",
                self.layers_quantised, self.layers_read
            )
        };
        if let Some(b) = self.bytes_written {
            s += &format!(
                "; cache written to {} ({}, {:.2} s)",
                self.file.display(),
                size_text(b),
                self.write_s
            );
        }
        if let Some(e) = &self.write_error {
            s += &format!("; {e}");
        }
        s
    }
}

/// `1.23 GiB`, or `4.5 MiB` below a tenth of a GiB.
pub fn size_text(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 0.1 {
        format!("{gib:.2} GiB")
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[derive(Default)]
struct SessionState {
    /// Every quantised layer of the model so far (what the file is rewritten from).
    layers: Vec<CachedLayer>,
    report: QuantCacheReport,
}

/// The cache for one model load: hand every linear layer to [`Self::read`] before quantising it
/// and to [`Self::keep`] after, then call [`Self::finish`] once the model is loaded.
pub struct QuantCacheSession {
    path: PathBuf,
    key: CacheKey,
    source: String,
    file: Option<CacheFile>,
    state: Mutex<SessionState>,
}

impl QuantCacheSession {
    /// The session for the cache file of `key` in `dir`; `source` fingerprints the checkpoint
    /// files (a file written from other files is not used). Never fails: an unusable file
    /// becomes a warning in the report and is rewritten at the end.
    pub fn open(dir: &Path, key: CacheKey, source: String) -> Self {
        let path = dir.join(key.file_name());
        let mut state = SessionState::default();
        state.report.file = path.clone();
        let file = match CacheFile::open(&path, &key, &source) {
            Ok(f) => f,
            Err(e) => {
                state.report.warnings.push(format!(
                    "the quantised-weight cache {} cannot be used ({e:#}): quantising again and \
                     rewriting it",
                    path.display()
                ));
                None
            }
        };
        QuantCacheSession {
            path,
            key,
            source,
            file,
            state: Mutex::new(state),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Layer `name` from the cache, when the file holds a sound copy of it stored as `storage`,
    /// `shape` (out, in), with a bias exactly when `with_bias`. None: quantise it (a copy that
    /// fails its checks is reported).
    pub fn read(
        &self,
        name: &str,
        storage: LayerStorage,
        shape: (usize, usize),
        with_bias: bool,
        ctx: &QuantContext,
        device: &Device,
    ) -> Option<QLinear> {
        let file = self.file.as_ref()?;
        let t = Instant::now();
        let read = file
            .read_layer(name, shape, with_bias, device)
            .and_then(|(state, bias)| {
                let layer = match state {
                    LayerState::Nf4(w) => QLinear::Nf4(Nf4Linear::from_shared(
                        w,
                        bias,
                        ctx.scratch().clone(),
                        ctx.fp8_for(name),
                    )),
                    LayerState::Ggml(q) => QLinear::Q4k(KQuantLinear::from_quantized(q, bias)?),
                };
                anyhow::ensure!(
                    layer.storage() == storage,
                    "layer {name} is {} in the cache, {storage} is wanted",
                    layer.storage()
                );
                Ok(layer)
            });
        let mut st = self.state();
        st.report.read_s += t.elapsed().as_secs_f64();
        match read {
            Ok(layer) => {
                st.report.layers_read += 1;
                Some(layer)
            }
            Err(e) => {
                st.report.warnings.push(format!(
                    "the quantised-weight cache {} cannot be used for layer {name} ({e:#}): \
                     quantising it again and rewriting the cache",
                    file.path().display()
                ));
                None
            }
        }
    }

    /// Records a layer of the model (read from the cache or just quantised) for the file;
    /// dense layers are not cached.
    pub fn keep(&self, name: &str, layer: &QLinear, quantised_now: bool) {
        let (state, bias) = match layer.base() {
            QLinear::Dense(_) | QLinear::Lora(_) | QLinear::Stack(_) => return,
            QLinear::Nf4(l) => (LayerState::Nf4(l.shared_weight().clone()), l.bias()),
            QLinear::Q4k(l) => (LayerState::Ggml(l.quantized().clone()), l.bias()),
        };
        let mut st = self.state();
        if quantised_now {
            st.report.layers_quantised += 1;
        }
        st.layers.push(CachedLayer {
            name: name.to_string(),
            state,
            bias: bias.cloned(),
        });
    }

    /// Writes the file when any layer was quantised or the file held layers the model did not
    /// use, and returns the report. Write failures are reported, not raised.
    pub fn finish(self) -> QuantCacheReport {
        let mut st = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        let used: std::collections::HashSet<&str> =
            st.layers.iter().map(|l| l.name.as_str()).collect();
        let extra = self
            .file
            .as_ref()
            .map(|f| {
                f.layer_names()
                    .filter(|n| !used.contains(n.as_str()))
                    .count()
            })
            .unwrap_or(0);
        if extra > 0 {
            st.report.warnings.push(format!(
                "the quantised-weight cache {} holds {extra} layers this model does not have: \
                 rewriting it",
                self.path.display()
            ));
        }
        let rewrite = st.report.layers_quantised > 0 || extra > 0;
        // The old file's map must be closed before the new file replaces it on every platform.
        drop(self.file);
        if rewrite && !st.layers.is_empty() {
            let t = Instant::now();
            match cache_file::write(&self.path, &self.key, &self.source, &st.layers) {
                Ok(bytes) => st.report.bytes_written = Some(bytes),
                Err(e) => {
                    st.report.write_error = Some(format!(
                        "writing the quantised-weight cache {} failed (the model is unaffected; \
                         the next load quantises again): {e:#}",
                        self.path.display()
                    ))
                }
            }
            st.report.write_s = t.elapsed().as_secs_f64();
        }
        st.report
    }
}

/// The fingerprint of checkpoint files that a cache written from them must match: each file's
/// resolved path (hub snapshots resolve to content-addressed blobs), size and modification time.
pub fn source_fingerprint(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| {
            let real = f.canonicalize().unwrap_or_else(|_| f.clone());
            let meta = std::fs::metadata(&real).ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!(
                "{}:{}:{mtime}",
                real.display(),
                meta.map(|m| m.len()).unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes a layer of `shape` (with or without bias) takes dense in `dtype`: what a layer read
/// from the cache is recorded as having been before quantisation.
pub fn dense_bytes(shape: (usize, usize), bias: bool, dtype: candle_core::DType) -> usize {
    (shape.0 * shape.1 + if bias { shape.0 } else { 0 }) * dtype.size_in_bytes()
}
