//! Tests of `model.rs`: the random adapter in both forms, and the CPU's query kernels against
//! the general path.

use super::*;
use crate::settings::DeviceChoice;

/// A random model with the random adapter `random:3b` carries, at the tiny size: every
/// adapter entry meets a layer, the unmerged form runs beside NF4 layers, and the adapter
/// changes the vectors.
#[test]
fn random_adapter_fits_its_model_in_both_forms() {
    let mut settings = ModelSettings {
        device: DeviceChoice::Cpu,
        quant: Quant::Nf4,
        quant_cache: crate::settings::QuantCacheSetting::Off,
        ..ModelSettings::default()
    };
    let query = |s: &ModelSettings, rank: Option<usize>| {
        let mut r = source::resolve("random:tiny").unwrap();
        assert_eq!(r.random_adapter_rank, None);
        r.random_adapter_rank = rank;
        let adapter = ColQwen::adapter_for(s, &r).unwrap();
        let m = ColQwen::from_resolved(r, adapter, s, &Device::Cpu).unwrap();
        (
            m.embed_queries(&["a table".into()]).unwrap().remove(0),
            m.identity().clone(),
        )
    };
    let (plain, id) = query(&settings, None);
    assert_eq!((id.adapter, id.lora), (None, None));
    let (unmerged, id) = query(&settings, Some(4));
    assert_eq!(id.lora, Some(LoraMode::Unmerged));
    assert_eq!(id.adapter.as_deref(), Some("random LoRA r=4"));
    settings.lora = LoraMode::Merged;
    let (merged, _) = query(&settings, Some(4));
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(dist(&plain, &unmerged) > 1e-3);
    assert!(dist(&merged, &unmerged) > 0.0);
}

/// Query vectors from the few-row CPU kernels (`quant::gemm`) against the general path
/// (dequantise or widen, then candle's GEMM) of the same model: f32, bf16 and NF4 weights with
/// the unmerged adapter, on every instruction set the kernels dispatch to. The f32 sets only
/// reorder f32 sums (1e-4), as does the bf16-product set with f32 weights; with bf16 and NF4
/// weights it rounds its operands to bf16, which is allowed where a query vector stays within
/// 1e-2 of the f32 one and a test index's top 10 is the same (here 400 pages of 16 random
/// unit vectors, exact MaxSim in f64). The same ten pages, not the same order: random pages'
/// scores crowd together, and two a fraction of a percent apart trade places when the
/// vectors move by bf16's rounding, as they would by any change of that size.
#[test]
fn cpu_query_kernels_match_the_general_path() {
    use crate::quant::gemm::{with_isa, without_kernels, CpuIsa};
    use crate::synthetic::{top10_maxsim as top10, unit_vector_pages};
    let (mut bf16_seen, mut reordered) = (None::<f32>, 0);
    // The kernels and the general path add in other orders: some vector must differ, or the
    // switch did not reach the forward (which runs on a thread of its own on the CPU).
    let mut any_difference = false;
    let cases = [
        (DType::F32, Quant::None),
        (DType::Bf16, Quant::None),
        (DType::F32, Quant::Nf4),
    ];
    let queries = [
        "a table of the yearly revenue".to_string(),
        "diagram of the cooling circuit with the pump and the heat exchanger".to_string(),
    ];
    for (dtype, quant) in cases {
        let settings = ModelSettings {
            device: DeviceChoice::Cpu,
            dtype,
            quant,
            quant_cache: crate::settings::QuantCacheSetting::Off,
            ..ModelSettings::default()
        };
        let mut r = source::resolve("random:tiny").unwrap();
        r.random_adapter_rank = (quant == Quant::Nf4).then_some(4);
        let adapter = ColQwen::adapter_for(&settings, &r).unwrap();
        let m = ColQwen::from_resolved(r, adapter, &settings, &Device::Cpu).unwrap();
        // One query at a time, as a search embeds it: two in one batch are more rows than
        // the few-row kernels take, and both sides would be the general path.
        let each = |q: &String| {
            m.embed_queries(std::slice::from_ref(q))
                .map(|mut v| v.remove(0))
        };
        let general: Vec<Vec<f32>> =
            without_kernels(|| queries.iter().map(each).collect::<Result<_>>()).unwrap();
        let isas = CpuIsa::ALL.into_iter().filter(|i| i.available());
        let runs: Vec<_> = isas
            .map(|i| {
                (
                    i,
                    with_isa(i, || queries.iter().map(each).collect::<Result<Vec<_>>>()),
                )
            })
            .collect();
        // The sets add in other orders too: if every set gave the same bits, the set asked for
        // did not reach the forward's thread.
        let bits = |r: &Result<Vec<Vec<f32>>>| -> Vec<u32> {
            let r = r.as_ref().unwrap();
            r.iter().flatten().map(|v| v.to_bits()).collect()
        };
        assert!(
            runs.len() < 2 || runs.iter().any(|(_, r)| bits(r) != bits(&runs[0].1)),
            "{dtype:?} {quant:?}: every instruction set gave the same bits"
        );
        let dim = m.embedding_dim();
        let pages = unit_vector_pages(400, 16, dim);
        for (isa, fast) in runs {
            let fast = fast.unwrap();
            // f32 weights keep f32 products on the bf16-product set.
            let bf16 = isa.bf16_products() && (dtype, quant) != (DType::F32, Quant::None);
            let bound = if bf16 { 1e-2 } else { 1e-4 };
            for (a, b) in fast.iter().zip(&general) {
                assert_eq!(a.len(), b.len());
                let err = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                any_difference |= err > 0.0;
                // Unit vectors: an absolute error is a relative one.
                assert!(
                    err < bound,
                    "{dtype:?} {quant:?} on {}: query vectors differ by {err}",
                    isa.name()
                );
                if bf16 {
                    bf16_seen = Some(bf16_seen.unwrap_or(0.0).max(err));
                    let (fast10, general10) = (top10(a, dim, &pages), top10(b, dim, &pages));
                    let set = |v: &[usize]| {
                        let mut v = v.to_vec();
                        v.sort_unstable();
                        v
                    };
                    reordered += usize::from(fast10 != general10);
                    assert_eq!(
                        set(&fast10),
                        set(&general10),
                        "{dtype:?} {quant:?} on {}: another top 10",
                        isa.name()
                    );
                }
            }
        }
    }
    assert!(
        any_difference,
        "the kernels and the general path gave the same bits: one of them did not run"
    );
    if let Some(err) = bf16_seen {
        eprintln!(
            "bf16 products: query vectors within {err:.2e} of the general path, the same top \
             10 of which {reordered} of {} in another order",
            2 * queries.len()
        );
    }
}
