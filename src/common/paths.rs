//! Where things live on disk: the index (one named index per corpus under the platform data
//! dir), settings, and the PDFium library.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The checkout this binary was built from (its `assets/`, `vendor/` and `bench/`): the last place
/// looked for shipped files, after the folders around the executable. Every crate asks here, since
/// each crate's own `CARGO_MANIFEST_DIR` is its folder under `src/`.
pub fn source_root() -> PathBuf {
    let common = Path::new(env!("CARGO_MANIFEST_DIR")); // <checkout>/src/common
    common.ancestors().nth(2).unwrap_or(common).to_path_buf()
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("org", "pagesight", "pagesight")
}

/// Platform data dir (e.g. `~/.local/share/pagesight`), or `./.pagesight` when none is known.
pub fn data_dir() -> PathBuf {
    project_dirs()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".pagesight"))
}

/// Platform config dir for settings.
pub fn config_dir() -> PathBuf {
    project_dirs()
        .map(|d| d.config_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".pagesight"))
}

/// The default index for a corpus folder: `<data>/indexes/<folder name>-<hash of its path>`, so two
/// corpora never share an index and the same folder always finds its own.
pub fn default_index_for(folder: &Path) -> PathBuf {
    let canon = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    let name = canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let h = blake3::hash(canon.as_os_str().as_encoded_bytes()).to_hex();
    data_dir()
        .join("indexes")
        .join(format!("{name}-{}", &h[..8]))
}

/// Where quantised weights are cached between runs: `<data>/quant-cache`, next to the default
/// indexes (one folder for every index: a cache file is keyed by the model, not the corpus).
/// `PAGESIGHT_QUANT_CACHE=off` (or `0`, or empty) turns caching off, `PAGESIGHT_QUANT_CACHE=DIR` moves it; this is
/// the only switch for commands without model flags (`search` reloads the index's model).
pub fn quant_cache_dir() -> Option<PathBuf> {
    match std::env::var_os(crate::env_vars::QUANT_CACHE) {
        Some(v) if v.is_empty() || v == "off" || v == "0" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(data_dir().join("quant-cache")),
    }
}

/// Where our compiled GPU kernels are kept between runs (`compiled_cache`): `<data>/kernel-cache`.
pub fn kernel_cache_dir() -> PathBuf {
    data_dir().join("kernel-cache")
}

/// Candidate locations for libpdfium, in search order: `$PDFIUM_LIB` (file or dir), next to the
/// executable, `vendor/pdfium/` of the source tree, `./vendor/pdfium/`.
pub fn pdfium_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os(crate::env_vars::PDFIUM_LIB) {
        let p = PathBuf::from(p);
        v.push(if p.is_dir() {
            p.join("libpdfium.so")
        } else {
            p
        });
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        v.push(dir.join("libpdfium.so"));
    }
    v.extend(shipped_file_candidates(Path::new(
        "vendor/pdfium/libpdfium.so",
    )));
    v.push(PathBuf::from("vendor/pdfium/libpdfium.so"));
    v
}

/// Where a file the project ships at `rel` (relative to the checkout) may be, in search order:
/// under the executable's folder and the three above it (`target/{debug,release}/pagesight` and
/// `target/debug/deps/<test>` reach the checkout), then under `source_root()`.
pub fn shipped_file_candidates(rel: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        v.extend(dir.ancestors().take(4).map(|up| up.join(rel)));
    }
    v.push(source_root().join(rel));
    v
}

/// The first libpdfium that exists, or an error that says how to get one.
pub fn find_pdfium() -> Result<PathBuf> {
    let c = pdfium_candidates();
    if let Some(p) = c.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    bail!(
        "libpdfium.so not found (looked in: {}). Run `make setup` (or scripts/setup.sh) in the \
         pagesight source tree to fetch it, or set PDFIUM_LIB to the library's path",
        c.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
