//! The quantised-weight cache (issue 5): a second load reads the quantised layers instead of
//! quantising, gives bit-identical vectors, and never uses a file that is corrupt, truncated,
//! made under other settings or from changed checkpoint files.

use candle_core::{Device, Module, Tensor};
use pagesight::devtools::model_parity::ParityFixture;
use pagesight::engine::{DType, DeviceChoice, Event, ModelSettings, Quant, QuantCacheSetting};
use pagesight::model::colqwen::{ColQwen, PageEmbedding};
use pagesight::model::quant::{
    CacheKey, LayerStorage, QLinear, QuantCacheReport, QuantCacheSession, QuantContext,
};
use pagesight::model::synthetic::synthetic_pages;
use pagesight::model::LoraMode;
use std::path::{Path, PathBuf};

fn tiny(quant: Quant, dtype: DType, cache: &Path) -> ModelSettings {
    ModelSettings {
        model: "random:tiny".into(),
        device: DeviceChoice::Cpu,
        dtype,
        quant,
        quant_cache: QuantCacheSetting::Dir(cache.to_path_buf()),
        ..ModelSettings::default()
    }
}

fn uncached(s: &ModelSettings) -> ModelSettings {
    ModelSettings {
        quant_cache: QuantCacheSetting::Off,
        ..s.clone()
    }
}

/// Two pages (several windows, padding) and two queries: everything the model outputs.
fn outputs(model: &ColQwen) -> (Vec<PageEmbedding>, Vec<Vec<f32>>) {
    let (pixels, grids) = synthetic_pages(2, 12, 16).unwrap();
    let pages = model.embed_images(&pixels, &grids).unwrap();
    let queries = model
        .embed_queries(&["a table of revenues".into(), "x".into()])
        .unwrap();
    (pages, queries)
}

fn load(s: &ModelSettings) -> (ColQwen, QuantCacheReport) {
    let m = ColQwen::load(s).unwrap();
    let r = m.quant_cache_report().cloned().expect("a cache report");
    (m, r)
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn second_load_reads_the_cache_and_gives_identical_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let s = tiny(Quant::Nf4, DType::F32, dir.path());
    let (cold, cold_r) = load(&s);
    assert!(cold_r.warnings.is_empty(), "{:?}", cold_r.warnings);
    assert_eq!(cold_r.layers_read, 0);
    assert!(cold_r.layers_quantised > 10, "{cold_r:?}");
    assert!(cold_r.bytes_written.unwrap() > 0 && cold_r.write_error.is_none());
    assert_eq!(cache_files(dir.path()), vec![cold_r.file.clone()]);

    let (warm, warm_r) = load(&s);
    assert!(warm_r.used(), "{warm_r:?}");
    assert_eq!(warm_r.layers_read, cold_r.layers_quantised);
    assert_eq!(warm_r.bytes_written, None, "a used cache is not rewritten");
    assert!(warm_r.warnings.is_empty(), "{:?}", warm_r.warnings);
    assert_eq!(warm.quant_summary(), cold.quant_summary());

    let plain = ColQwen::load(&uncached(&s)).unwrap();
    assert!(plain.quant_cache_report().is_none());
    let want = outputs(&plain);
    assert_eq!(outputs(&cold), want);
    assert_eq!(outputs(&warm), want, "vectors from the cache differ");
}

#[test]
fn q4k_and_bf16_layers_round_trip_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let s = tiny(Quant::Q4k, DType::Bf16, dir.path());
    let (_, cold_r) = load(&s);
    assert!(cold_r.layers_quantised > 0 && cold_r.bytes_written.is_some());
    let (warm, warm_r) = load(&s);
    assert!(warm_r.used(), "{warm_r:?}");
    let plain = ColQwen::load(&uncached(&s)).unwrap();
    assert_eq!(outputs(&warm), outputs(&plain));
}

/// Runs `damage` on the cache file, then checks that the next load warns (naming the file and
/// `why`), quantises, gives the right vectors, and rewrites a file the load after uses.
fn falls_back_after(damage: impl Fn(&Path), why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = tiny(Quant::Nf4, DType::F32, dir.path());
    let (_, first) = load(&s);
    damage(&first.file);
    let (model, r) = load(&s);
    let file = first.file.display().to_string();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(&file) && w.contains(why)),
        "expected a warning about {why}: {:?}",
        r.warnings
    );
    assert!(r.layers_quantised > 0, "{r:?}");
    assert!(r.bytes_written.is_some(), "the cache is rewritten: {r:?}");
    let plain = ColQwen::load(&uncached(&s)).unwrap();
    assert_eq!(
        outputs(&model),
        outputs(&plain),
        "a damaged cache changed the model"
    );
    let (_, again) = load(&s);
    assert!(again.used() && again.warnings.is_empty(), "{again:?}");
}

#[test]
fn a_flipped_byte_falls_back_with_a_warning() {
    falls_back_after(
        |f| {
            let mut bytes = std::fs::read(f).unwrap();
            // Past the header: the middle of the tensor data.
            let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let at = 8 + header + (bytes.len() - 8 - header) / 2;
            bytes[at] ^= 0x10;
            std::fs::write(f, bytes).unwrap();
        },
        "checksum",
    );
}

#[test]
fn a_truncated_file_falls_back_with_a_warning() {
    falls_back_after(
        |f| {
            let len = std::fs::metadata(f).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
            file.set_len(len * 2 / 3).unwrap();
        },
        "not a complete safetensors file",
    );
}

#[test]
fn a_garbage_file_falls_back_with_a_warning() {
    falls_back_after(
        |f| std::fs::write(f, b"not a cache").unwrap(),
        "not a complete safetensors file",
    );
}

#[test]
fn other_quant_settings_never_reuse_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let nf4 = tiny(Quant::Nf4, DType::F32, dir.path());
    let (_, a) = load(&nf4);
    for other in [
        tiny(Quant::Q4k, DType::F32, dir.path()),
        tiny(Quant::Nf4, DType::Bf16, dir.path()),
        ModelSettings {
            quant_scope: pagesight::model::settings::QuantScope::LanguageModelOnly,
            ..tiny(Quant::Nf4, DType::F32, dir.path())
        },
    ] {
        let (_, r) = load(&other);
        assert_ne!(r.file, a.file);
        assert_eq!(r.layers_read, 0, "{r:?}");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
    assert_eq!(cache_files(dir.path()).len(), 4);
    // A file renamed into another setting's place is refused by the key it carries.
    let q4k = tiny(Quant::Q4k, DType::F32, dir.path());
    let (_, q) = load(&q4k);
    std::fs::copy(&a.file, &q.file).unwrap();
    let (model, r) = load(&q4k);
    assert_eq!(r.layers_read, 0, "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("other model settings")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        outputs(&model),
        outputs(&ColQwen::load(&uncached(&q4k)).unwrap())
    );
    // Caching off: nothing read or written.
    let off = tempfile::tempdir().unwrap();
    let m = ColQwen::load(&uncached(&tiny(Quant::Nf4, DType::F32, off.path()))).unwrap();
    assert!(m.quant_cache_report().is_none());
    assert!(cache_files(off.path()).is_empty());
}

#[test]
fn checkpoint_with_adapter_is_cached_and_changed_files_are_noticed() {
    let fixture = ParityFixture::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/colqwen_tiny"),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let model_dir = work.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    let fixture_model = PathBuf::from(
        fixture
            .settings(DeviceChoice::Cpu, DType::F32, Quant::Nf4)
            .model,
    );
    for e in std::fs::read_dir(&fixture_model).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model_dir.join(e.file_name())).unwrap();
    }
    let s = ModelSettings {
        model: model_dir.to_string_lossy().into_owned(),
        quant_cache: QuantCacheSetting::Dir(work.path().join("cache")),
        ..fixture.settings(DeviceChoice::Cpu, DType::F32, Quant::Nf4)
    };
    let (_, cold) = load(&s);
    assert!(cold.bytes_written.is_some(), "{cold:?}");
    // The LoRA-merged layers come from the cache; the adapter still counts as fully used.
    let (warm, r) = load(&s);
    assert!(r.used(), "{r:?}");
    let want = outputs(&ColQwen::load(&uncached(&s)).unwrap());
    assert_eq!(outputs(&warm), want);

    // The same checkpoint identity (names, sizes, config) but a rewritten weight file.
    let weights = model_dir.join("model.safetensors");
    let later = std::fs::metadata(&weights).unwrap().modified().unwrap()
        + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (model, r) = load(&s);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("checkpoint files changed")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.layers_read, 0);
    assert_eq!(outputs(&model), want);

    // Ingest tells the user (engine event), not only the log.
    std::fs::write(&r.file, b"x").unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    use pagesight::engine::stage::{Stage, StageClock};
    let mut clock = StageClock::start(Stage::Discover);
    pagesight::engine::ingest::load_model(&s, &tx, &mut clock).unwrap();
    // The load quantised (the cache was unusable): its own stage, apart from reading weights.
    let startup = clock.take(Stage::Render);
    assert!(
        startup.get(Stage::Quantize) > 0.0 && startup.get(Stage::ModelLoad) > 0.0,
        "{startup:?}"
    );
    assert!(startup.get(Stage::Discover) < startup.get(Stage::ModelLoad));
    let notices: Vec<String> = rx
        .try_iter()
        .filter_map(|e| match e {
            Event::Notice { message } => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        notices.iter().any(|m| m.contains("cannot be used")),
        "{notices:?}"
    );
}

/// The session API on single layers: Q4K (rows of whole 256-blocks, which random:tiny lacks)
/// and NF4 without double quantisation.
#[test]
fn single_layers_round_trip_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (32, 512), &dev).unwrap();
    let b = Tensor::randn(0f32, 1.0, 32, &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (16, 512), &dev).unwrap();
    let key = |quant| CacheKey {
        checkpoint_hash: "test".into(),
        adapter_hash: None,
        dtype: "f32".into(),
        quant,
        nf4_blocksize: 64,
        double_quant: false,
        scope: "AllLinear".into(),
        pagesight_version: "test".into(),
    };
    // What a killed writer left: removed by the next write.
    let abandoned = dir.path().join(".writing-999999999-0");
    std::fs::create_dir(&abandoned).unwrap();
    std::fs::write(abandoned.join("half-written"), b"x").unwrap();
    for (quant, storage) in [
        (
            Quant::Q4k,
            LayerStorage::Ggml(candle_core::quantized::GgmlDType::Q4K),
        ),
        (Quant::Nf4, LayerStorage::Nf4),
    ] {
        let ctx = QuantContext::new(&dev).with_double_quant(false);
        let layer = QLinear::dense(w.clone(), Some(b.clone()))
            .quantize(quant, &ctx)
            .unwrap();
        assert_eq!(layer.storage(), storage);
        let session = QuantCacheSession::open(dir.path(), key(quant), "src".into());
        assert!(session
            .read("l", storage, (32, 512), true, &ctx, &dev)
            .is_none());
        session.keep("l", &layer, true);
        let written = session.finish();
        assert!(written.bytes_written.is_some(), "{written:?}");
        assert!(!abandoned.exists());

        let session = QuantCacheSession::open(dir.path(), key(quant), "src".into());
        // A wrong shape or bias expectation is refused, not misread.
        assert!(session
            .read("l", storage, (32, 256), true, &ctx, &dev)
            .is_none());
        assert!(session
            .read("l", storage, (32, 512), false, &ctx, &dev)
            .is_none());
        let back = session
            .read("l", storage, (32, 512), true, &ctx, &dev)
            .expect("read back");
        let diff = (back.forward(&x).unwrap() - layer.forward(&x).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{quant:?}");
        // Another source fingerprint: the file is not used.
        let other = QuantCacheSession::open(dir.path(), key(quant), "changed".into());
        assert!(other
            .read("l", storage, (32, 512), true, &ctx, &dev)
            .is_none());
        assert!(other.finish().warnings[0].contains("checkpoint files changed"));
    }
}

/// Settings saved before the cache existed (GUI storage, recorded runs) still load, with the
/// cache on in its default folder.
#[test]
fn settings_without_the_cache_field_load_with_the_default() {
    let mut v = serde_json::to_value(ModelSettings::default()).unwrap();
    v.as_object_mut().unwrap().remove("quant_cache");
    let s: ModelSettings = serde_json::from_value(v).unwrap();
    assert_eq!(s.quant_cache, QuantCacheSetting::Default);
    let dir: ModelSettings = serde_json::from_value(serde_json::json!({
        "model": "random:tiny", "adapter": null, "device": "cpu", "dtype": "f32",
        "quant": "nf4", "max_visual_tokens": 768, "quant_cache": {"dir": "/x"}
    }))
    .unwrap();
    assert_eq!(dir.quant_cache, QuantCacheSetting::Dir("/x".into()));
    assert_eq!(dir.quant_cache.dir(), Some(PathBuf::from("/x")));
    assert_eq!(QuantCacheSetting::Off.dir(), None);
}

/// With the adapter beside the quantised weights, the cache holds the base layers alone: the
/// same file serves the model without the adapter (and any other adapter of this base), and the
/// warm load still applies the adapter. Merged layers are another model: another file.
#[test]
fn unmerged_adapters_share_the_base_cache_and_merged_ones_do_not() {
    let fixture = ParityFixture::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/colqwen_tiny"),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let unmerged = ModelSettings {
        quant_cache: QuantCacheSetting::Dir(work.path().join("cache")),
        ..fixture.settings(DeviceChoice::Cpu, DType::F32, Quant::Nf4)
    };
    assert_eq!(unmerged.lora, LoraMode::Unmerged);
    let (_, cold) = load(&unmerged);
    assert!(cold.bytes_written.is_some(), "{cold:?}");
    let base = ModelSettings {
        adapter: None,
        ..unmerged.clone()
    };
    let (_, r) = load(&base);
    assert!(r.used(), "{r:?}");
    assert_eq!(r.file, cold.file);
    let (warm, r) = load(&unmerged);
    assert!(r.used(), "{r:?}");
    assert_eq!(
        outputs(&warm),
        outputs(&ColQwen::load(&uncached(&unmerged)).unwrap())
    );
    let merged = ModelSettings {
        lora: LoraMode::Merged,
        ..unmerged.clone()
    };
    let (_, r) = load(&merged);
    assert_ne!(r.file, cold.file);
    assert_eq!(r.layers_read, 0, "{r:?}");
}
