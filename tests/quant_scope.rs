//! `--quant-scope`: NF4 of every linear layer (`all`, what transformers' bitsandbytes loading
//! does) against NF4 of the language model only (`lm`, the vision tower dense), each measured
//! against the dense f32 model on the committed fixture (tests/fixtures/colqwen_tiny), and the
//! scope recorded wherever the quantisation is, so an index refuses the other scope's vectors.

use crate::model::{fixture, fixture_pixels, queries, settings};
use pagesight::devtools::model_parity::rel_err;
use pagesight::engine::{DType, ModelSettings, Quant, QuantScope};
use pagesight::index::{Index, IndexError, Provenance};
use pagesight::model::colqwen::ColQwen;
use pagesight::model::quant::{LayerRecord, LayerStorage};
use std::process::Command;

fn nf4_settings(scope: QuantScope) -> ModelSettings {
    ModelSettings {
        quant: Quant::Nf4,
        quant_scope: scope,
        ..settings(DType::F32, true)
    }
}

/// Every query's and every image's vectors, named `query.i` / `image.i`.
fn embeddings(model: &ColQwen) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = model
        .embed_queries(&queries())
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("query.{i}"), v))
        .collect();
    let (px, grids) = fixture_pixels();
    for (i, p) in model
        .embed_images(&px, &grids)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        out.push((format!("image.{i}"), p.vectors));
    }
    out
}

/// Mean over tokens of the cosine between the two tensors' vectors of the same token.
fn mean_cosine(a: &[f32], b: &[f32], dim: usize) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot =
        |x: &[f32], y: &[f32]| -> f64 { x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum() };
    let cosines: Vec<f64> = a
        .chunks(dim)
        .zip(b.chunks(dim))
        .map(|(x, y)| dot(x, y) / (dot(x, x) * dot(y, y)).sqrt())
        .collect();
    cosines.iter().sum::<f64>() / cosines.len() as f64
}

/// (rel err, mean cosine) of each tensor of `got` against the same tensor of `dense`.
fn error_report(
    label: &str,
    got: &[(String, Vec<f32>)],
    dense: &[(String, Vec<f32>)],
    dim: usize,
) -> Vec<(f64, f64)> {
    got.iter()
        .zip(dense)
        .map(|((name, v), (dense_name, d))| {
            assert_eq!(name, dense_name);
            assert!(
                v.iter().all(|x| x.is_finite()),
                "{label} {name}: not finite"
            );
            let (e, c) = (rel_err(v, d), mean_cosine(v, d, dim));
            eprintln!("nf4 {label:<3} vs dense f32  {name:<8} rel err {e:.4}  mean cosine {c:.4}");
            (e, c)
        })
        .collect()
}

fn count(layers: &[LayerRecord], vision: bool, storage: LayerStorage) -> usize {
    layers
        .iter()
        .filter(|r| r.name.starts_with("visual.") == vision && r.storage == storage)
        .count()
}

#[test]
fn nf4_language_model_only_is_closer_to_dense_than_all_linear() {
    let dense_model = ColQwen::load(&settings(DType::F32, true)).unwrap();
    let dim = dense_model.embedding_dim();
    let dense = embeddings(&dense_model);
    let all = ColQwen::load(&nf4_settings(QuantScope::AllLinear)).unwrap();
    let lm = ColQwen::load(&nf4_settings(QuantScope::LanguageModelOnly)).unwrap();

    // Which layers each scope reached.
    let (all_layers, lm_layers) = (all.quant_layers(), lm.quant_layers());
    let vision_layers = all_layers
        .iter()
        .filter(|r| r.name.starts_with("visual."))
        .count();
    eprintln!(
        "all: {:?}\nlm:  {:?}\nvision linear layers: {vision_layers}",
        all.quant_summary(),
        lm.quant_summary()
    );
    assert!(
        count(all_layers, true, LayerStorage::Nf4) > 0,
        "all-linear left the vision tower dense"
    );
    assert_eq!(
        count(lm_layers, true, LayerStorage::Nf4),
        0,
        "lm-only quantised vision layers"
    );
    assert_eq!(count(lm_layers, true, LayerStorage::Dense), vision_layers);
    assert_eq!(
        count(all_layers, false, LayerStorage::Nf4),
        count(lm_layers, false, LayerStorage::Nf4)
    );
    assert!(
        count(lm_layers, false, LayerStorage::Nf4) > 0,
        "lm-only quantised nothing"
    );
    let (all_sum, lm_sum) = (all.quant_summary().unwrap(), lm.quant_summary().unwrap());
    assert_eq!(
        all_sum.nf4_layers,
        lm_sum.nf4_layers + count(all_layers, true, LayerStorage::Nf4)
    );
    assert!(
        lm_sum.bytes_after > all_sum.bytes_after,
        "{lm_sum:?} vs {all_sum:?}"
    );

    let all_emb = embeddings(&all);
    let lm_emb = embeddings(&lm);
    let all_err = error_report("all", &all_emb, &dense, dim);
    let lm_err = error_report("lm", &lm_emb, &dense, dim);
    let mean =
        |r: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| r.iter().map(f).sum::<f64>() / r.len() as f64;
    eprintln!(
        "mean over tensors: all rel err {:.4} cosine {:.4}; lm rel err {:.4} cosine {:.4}",
        mean(&all_err, |r| r.0),
        mean(&all_err, |r| r.1),
        mean(&lm_err, |r| r.0),
        mean(&lm_err, |r| r.1)
    );
    for (i, ((name, a), (_, l))) in all_emb.iter().zip(&lm_emb).enumerate() {
        if name.starts_with("query.") {
            // A query never enters the vision tower, and both scopes quantise the language model
            // the same way: the same vectors.
            assert_eq!(a, l, "{name}: lm-only and all-linear differ on a query");
        } else {
            assert!(
                lm_err[i].0 < all_err[i].0 && lm_err[i].1 > all_err[i].1,
                "{name}: lm-only (rel err {:.4}, cosine {:.4}) is not closer to dense than \
                 all-linear ({:.4}, {:.4})",
                lm_err[i].0,
                lm_err[i].1,
                all_err[i].0,
                all_err[i].1
            );
        }
    }
    // Sanity bound from the reference: bitsandbytes' NF4 of this tiny random model is 0.25–0.34
    // rel err / cosine 0.94–0.97 from dense (tests/model.rs, nf4_model_matches_reference_nf4).
    for (e, c) in all_err.iter().chain(&lm_err) {
        assert!(*e < 0.5 && *c > 0.9, "rel err {e}, cosine {c}");
    }

    // What an index records: the scope when quantised, `all` unquantised (scope irrelevant).
    let prov =
        pagesight::engine::ingest::provenance(&lm, &nf4_settings(QuantScope::LanguageModelOnly));
    assert_eq!(
        (prov.quant.as_str(), prov.quant_scope.as_str()),
        ("nf4", "lm")
    );
    let back = pagesight::engine::search::model_settings_for(
        &prov,
        pagesight::model::settings::DeviceChoice::Auto,
    )
    .unwrap();
    assert_eq!(
        (back.quant, back.quant_scope),
        (Quant::Nf4, QuantScope::LanguageModelOnly)
    );
    let unquantised = ModelSettings {
        quant_scope: QuantScope::LanguageModelOnly,
        ..settings(DType::F32, true)
    };
    let prov = pagesight::engine::ingest::provenance(&dense_model, &unquantised);
    assert_eq!(prov.quant_scope, "all");
    assert_eq!(dense_model.identity().quant_scope, QuantScope::AllLinear);
    assert_eq!(lm.identity().quant_scope, QuantScope::LanguageModelOnly);
}

#[test]
fn index_refuses_vectors_of_the_other_quant_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = crate::index::prov(16);
    all.quant = "nf4".into();
    Index::open_or_create(tmp.path(), &all).unwrap();
    let lm = Provenance {
        quant_scope: "lm".into(),
        ..all.clone()
    };
    let err = Index::open_or_create(tmp.path(), &lm)
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, IndexError::ModelMismatch(_)), "{msg}");
    assert!(msg.contains("scope lm"), "{msg}");
    Index::open_or_create(tmp.path(), &all).expect("same scope is accepted");

    // An index written before the option existed records no scope: every layer was quantised.
    let mut old = serde_json::to_value(&lm).unwrap();
    old.as_object_mut().unwrap().remove("quant_scope");
    let old: Provenance = serde_json::from_value(old).unwrap();
    assert_eq!(old, all);
}

/// `bench embed --quant nf4 --quant-scope lm` on the fixture model: runs and reports the layers
/// and weight bytes of each scope.
#[test]
fn bench_embed_reports_each_quant_scope() {
    let run = |scope: &str| -> serde_json::Value {
        let model = fixture().join("model");
        let out = Command::new(env!("CARGO_BIN_EXE_pagesight"))
            .args(["bench", "embed", "--model"])
            .arg(&model)
            .args([
                "--device",
                "cpu",
                "--dtype",
                "f32",
                "--quant",
                "nf4",
                "--quant-scope",
                scope,
            ])
            .args([
                "--no-quant-cache",
                "--grid-h",
                "8",
                "--grid-w",
                "8",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (all, lm) = (run("all"), run("lm"));
    assert_eq!(
        (all["quant_scope"].as_str(), lm["quant_scope"].as_str()),
        (Some("all"), Some("lm"))
    );
    let layers = |doc: &serde_json::Value, key: &str| doc["quant_layers"][key].as_u64().unwrap();
    assert!(
        layers(&lm, "nf4") > 0 && layers(&lm, "nf4") < layers(&all, "nf4"),
        "{lm} {all}"
    );
    assert!(layers(&lm, "bytes_after") > layers(&all, "bytes_after"));
    assert_eq!(layers(&lm, "bytes_before"), layers(&all, "bytes_before"));
}

/// The ingest form's scope toggle: disabled unquantised, and what is chosen reaches the engine.
#[test]
fn gui_scope_choice_reaches_the_ingest_command() {
    use egui_kittest::kittest::{NodeT, Queryable};
    let dir = tempfile::tempdir().unwrap();
    let crate::ui::Wired {
        mut h, commands, ..
    } = crate::ui::wired(crate::ui::corpus_options(dir.path()));
    h.run();
    // The precision choices are under the form's Advanced section.
    h.get_by_label("Advanced").click();
    h.run();
    // The device's best precision is the default: the precision choices wait until it is off.
    assert!(h.get_by_label("nf4").accesskit_node().is_disabled());
    h.get_by_label("best for this device").click();
    h.run();
    assert!(h.get_by_label("LM only").accesskit_node().is_disabled());
    h.get_by_label("nf4").click();
    h.run();
    assert!(!h.get_by_label("LM only").accesskit_node().is_disabled());
    h.get_by_label("LM only").click();
    h.run();
    h.get_by_label("Start ingest").click();
    h.run();
    let cmds = crate::ui::drain(&commands);
    let Some(pagesight::engine::Command::StartIngest { settings, .. }) = cmds.first() else {
        panic!("no StartIngest: {cmds:?}")
    };
    assert_eq!(
        (settings.model.quant, settings.model.quant_scope),
        (Quant::Nf4, QuantScope::LanguageModelOnly)
    );
}
