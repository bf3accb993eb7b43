//! Compiles our CUDA C kernels at load time with NVRTC, straight to a CUBIN for the device's
//! compute capability. A CUBIN (unlike PTX) loads on any driver of the same CUDA major version,
//! so a newer NVRTC on the machine cannot produce code the driver refuses to JIT. Shared by the
//! index (fused MaxSim), the model (its kernels) and the engine (8-bit patchify).

use anyhow::{anyhow, bail, Context, Result};
use candle_core::cuda_backend::cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use candle_core::cuda_backend::cudarc::nvrtc::{result as nv, sys as nvsys, Ptx};
use std::ffi::{CStr, CString};
use std::sync::Arc;

/// Compiles `source` (CUDA C, `extern "C"` kernels, no includes) and loads it into `ctx`; the
/// compiled CUBIN is kept in the kernel cache (`paths::kernel_cache_dir`), so a later start loads
/// it instead of compiling again.
pub fn load_module(ctx: &Arc<CudaContext>, name: &str, source: &str) -> Result<Arc<CudaModule>> {
    let (major, minor) = ctx
        .compute_capability()
        .context("reading the GPU's compute capability")?;
    let arch = format!("--gpu-architecture=sm_{major}{minor}");
    let options = [arch.as_str(), "--std=c++17", "-lineinfo"];
    let nvrtc = nvrtc_version();
    let joined = options.join(" ");
    let key: [&[u8]; 4] = [
        source.as_bytes(),
        name.as_bytes(),
        joined.as_bytes(),
        nvrtc.as_bytes(),
    ];
    let dir = crate::paths::kernel_cache_dir();
    let compile = || compile_source(name, source, &options, (major, minor));
    let (cubin, from) = crate::compiled_cache::cached_or_compiled(Some(&dir), &key, compile)?;
    match ctx.load_module(Ptx::from_binary(cubin)) {
        Ok(m) => Ok(m),
        // A kept module the driver refuses (another driver since): compile it afresh.
        Err(e) if from == crate::compiled_cache::Source::Cache => {
            tracing::warn!("kept kernels '{name}' refused by the driver ({e}); compiling again");
            crate::compiled_cache::forget(&dir, &key);
            let cubin = compile()?;
            ctx.load_module(Ptx::from_binary(cubin))
                .map_err(|e| anyhow!("loading the compiled kernels '{name}': {e}"))
        }
        Err(e) => Err(anyhow!("loading the compiled kernels '{name}': {e}")),
    }
}

/// "nvrtc MAJOR.MINOR": a newer NVRTC may compile the same source differently.
fn nvrtc_version() -> String {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the call writes one int into each pointer, both live locals.
    let ok = unsafe { nvsys::nvrtcVersion(&mut major, &mut minor) }.result();
    match ok {
        Ok(()) => format!("nvrtc {major}.{minor}"),
        Err(_) => "nvrtc unknown".into(),
    }
}

/// `source` compiled by NVRTC to a CUBIN for `sm_{major}{minor}`.
fn compile_source(
    name: &str,
    source: &str,
    options: &[&str],
    (major, minor): (i32, i32),
) -> Result<Vec<u8>> {
    let src =
        CString::new(source).map_err(|_| anyhow!("kernel source {name} contains a NUL byte"))?;
    let cname =
        CString::new(name).map_err(|_| anyhow!("kernel name {name} contains a NUL byte"))?;
    let prog = nv::create_program(src.as_c_str(), Some(cname.as_c_str())).map_err(|e| {
        anyhow!(
            "NVRTC could not create program {name}: {e:?} (is libnvrtc.so.13 on the library path?)"
        )
    })?;
    let result = compile_to_cubin(prog, options);
    // SAFETY: `prog` was created above and is destroyed here exactly once; nothing uses it
    // afterwards (`compile_to_cubin` has returned, and the CUBIN is an owned copy).
    unsafe {
        let _ = nv::destroy_program(prog);
    }
    result.with_context(|| format!("compiling CUDA kernels '{name}' for sm_{major}{minor}"))
}

/// `prog` must be a live program from `nv::create_program`: its only caller, `compile_source`,
/// destroys it only after this returns.
fn compile_to_cubin(prog: nvsys::nvrtcProgram, options: &[&str]) -> Result<Vec<u8>> {
    // SAFETY: `prog` is live (created and not yet destroyed by `load_module`).
    if let Err(e) = unsafe { nv::compile_program(prog, options) } {
        // SAFETY: as above; a failed compile leaves the program and its log valid.
        let log = unsafe { nv::get_program_log(prog) }.ok();
        let log = log
            .map(|l| {
                // SAFETY: NVRTC's log is NUL-terminated (its size counts the terminator, so it is
                // never empty), and `l` owns it until `into_owned` has copied it out.
                unsafe { CStr::from_ptr(l.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        bail!("NVRTC failed ({e:?}) with options {options:?}:\n{log}");
    }
    let mut size = 0usize;
    // SAFETY: `prog` is live and compiled; the call writes one `size_t` into `size`, a live local.
    unsafe { nvsys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .map_err(|e| anyhow!("nvrtcGetCUBINSize: {e:?}"))?;
    if size == 0 {
        bail!("NVRTC produced an empty CUBIN");
    }
    let mut cubin = vec![0u8; size];
    // SAFETY: NVRTC writes exactly `size` bytes (the size it just reported for this program)
    // into `cubin`, which holds `size` bytes.
    unsafe { nvsys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut std::ffi::c_char) }
        .result()
        .map_err(|e| anyhow!("nvrtcGetCUBIN: {e:?}"))?;
    Ok(cubin)
}

pub fn function(module: &Arc<CudaModule>, name: &str) -> Result<CudaFunction> {
    module
        .load_function(name)
        .map_err(|e| anyhow!("kernel '{name}' missing from its module: {e}"))
}
