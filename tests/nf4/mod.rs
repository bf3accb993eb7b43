//! NF4 against bitsandbytes 0.50.2 (fixtures made by tools/gen_nf4_fixtures.py, which calls
//! `bitsandbytes.functional.quantize_4bit` / `dequantize_4bit` / `quantize_blockwise` itself),
//! and the quantised linear layers against dense ones.

use std::collections::BTreeMap;
use std::path::PathBuf;

use half::{bf16, f16};
use pagesight::model::quant::{blockwise8, AbsmaxState, Nf4Weight, QuantElement, NF4_CODE};
use safetensors::{Dtype, SafeTensors};

mod linear;
mod timing;

fn fixture_bytes() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nf4/nf4.safetensors");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run tools/gen_nf4_fixtures.py", path.display()))
}

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn load() -> Self {
        Fixture {
            bytes: fixture_bytes(),
        }
    }
    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("nf4 fixture is valid safetensors")
    }
    /// `{case: (shape, dtype)}` from the file's metadata.
    fn cases(&self) -> BTreeMap<String, ((usize, usize), String)> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        let meta = meta.metadata().as_ref().expect("fixture metadata");
        let cases: serde_json::Value = serde_json::from_str(&meta["cases"]).unwrap();
        cases
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let s = v["shape"].as_array().unwrap();
                let shape = (
                    s[0].as_u64().unwrap() as usize,
                    s[1].as_u64().unwrap() as usize,
                );
                (k.clone(), (shape, v["dtype"].as_str().unwrap().to_string()))
            })
            .collect()
    }
    fn raw(&self, name: &str) -> (Dtype, Vec<u8>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
        (t.dtype(), t.data().to_vec())
    }
    fn u8s(&self, name: &str) -> Vec<u8> {
        let (dt, data) = self.raw(name);
        assert_eq!(dt, Dtype::U8, "{name}");
        data
    }
    fn f32s(&self, name: &str) -> Vec<f32> {
        let (dt, data) = self.raw(name);
        assert_eq!(dt, Dtype::F32, "{name}");
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn u16s(&self, name: &str, want: Dtype) -> Vec<u16> {
        let (dt, data) = self.raw(name);
        assert_eq!(dt, want, "{name}");
        data.chunks_exact(2)
            .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

/// Bit patterns of a dequantised output, whatever its element type.
fn bits<T: QuantElement>(v: &[T]) -> Vec<u32> {
    v.iter().map(|x| x.to_f32().to_bits()).collect()
}

fn first_mismatch<T: PartialEq + std::fmt::Debug>(name: &str, ours: &[T], theirs: &[T]) {
    assert_eq!(ours.len(), theirs.len(), "{name}: length");
    if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        let n = ours.iter().zip(theirs).filter(|(a, b)| a != b).count();
        panic!(
            "{name}: {n} of {} differ; first at {i}: ours {:?}, bitsandbytes {:?}",
            ours.len(),
            ours[i],
            theirs[i]
        );
    }
}

/// Quantises a fixture case both ways and checks every array against bitsandbytes.
fn check_case(fx: &Fixture, name: &str, shape: (usize, usize), dtype: &str) {
    match dtype {
        "float32" => check_typed::<f32>(fx, name, shape, fx.f32s(&format!("{name}.input")), |n| {
            fx.f32s(n)
        }),
        "bfloat16" => {
            let input: Vec<bf16> = fx
                .u16s(&format!("{name}.input"), Dtype::BF16)
                .into_iter()
                .map(bf16::from_bits)
                .collect();
            check_typed::<bf16>(fx, name, shape, input, |n| {
                fx.u16s(n, Dtype::BF16)
                    .into_iter()
                    .map(|b| bf16::from_bits(b).to_f32())
                    .collect()
            })
        }
        "float16" => {
            let input: Vec<f16> = fx
                .u16s(&format!("{name}.input"), Dtype::F16)
                .into_iter()
                .map(f16::from_bits)
                .collect();
            check_typed::<f16>(fx, name, shape, input, |n| {
                fx.u16s(n, Dtype::F16)
                    .into_iter()
                    .map(|b| f16::from_bits(b).to_f32())
                    .collect()
            })
        }
        other => panic!("{name}: unexpected dtype {other}"),
    }
}

fn check_typed<T: QuantElement>(
    fx: &Fixture,
    name: &str,
    shape: (usize, usize),
    input: Vec<T>,
    dequant_as_f32: impl Fn(&str) -> Vec<f32>,
) {
    // Plain absmax.
    let w = Nf4Weight::quantize(&input, shape, 64, false).unwrap();
    first_mismatch(
        &format!("{name} packed"),
        &w.packed,
        &fx.u8s(&format!("{name}.packed")),
    );
    let AbsmaxState::Plain(absmax) = &w.absmax else {
        panic!("plain state expected")
    };
    first_mismatch(
        &format!("{name} absmax"),
        &bits(absmax),
        &bits(&fx.f32s(&format!("{name}.absmax"))),
    );
    let deq: Vec<T> = w.dequantize().unwrap();
    first_mismatch(
        &format!("{name} dequant"),
        &bits(&deq),
        &bits(&dequant_as_f32(&format!("{name}.dequant"))),
    );

    // Double quantisation.
    let w2 = Nf4Weight::quantize(&input, shape, 64, true).unwrap();
    first_mismatch(
        &format!("{name} dq packed"),
        &w2.packed,
        &fx.u8s(&format!("{name}.dq.packed")),
    );
    let AbsmaxState::Double {
        codes,
        absmax2,
        offset,
    } = &w2.absmax
    else {
        panic!("double state expected")
    };
    let their_offset = fx.f32s(&format!("{name}.dq.offset"))[0];
    // torch's f32 mean sums in an order that depends on SIMD width and threads; ours is the
    // exactly rounded sum. They must agree to an ulp; the codes are then checked bit-exactly
    // from bitsandbytes' own offset (and from ours when the offsets agree).
    let ulps = (offset.to_bits() as i64 - their_offset.to_bits() as i64).abs();
    assert!(
        ulps <= 1,
        "{name}: offset {offset} vs bitsandbytes {their_offset} ({ulps} ulp)"
    );
    eprintln!("{name}: offset {ulps} ulp from bitsandbytes");
    let absmax_plain = match &w.absmax {
        AbsmaxState::Plain(a) => a.clone(),
        _ => unreachable!(),
    };
    let from_theirs = AbsmaxState::double_quantize_with_offset(&absmax_plain, their_offset);
    let AbsmaxState::Double {
        codes: c2,
        absmax2: a2,
        ..
    } = &from_theirs
    else {
        unreachable!()
    };
    first_mismatch(
        &format!("{name} dq absmax codes"),
        c2,
        &fx.u8s(&format!("{name}.dq.absmax_codes")),
    );
    first_mismatch(
        &format!("{name} dq absmax2"),
        &bits(a2),
        &bits(&fx.f32s(&format!("{name}.dq.absmax2"))),
    );
    if ulps == 0 {
        first_mismatch(&format!("{name} dq codes (own offset)"), codes, c2);
        first_mismatch(
            &format!("{name} dq absmax2 (own offset)"),
            &bits(absmax2),
            &bits(a2),
        );
    } else {
        let differ = codes.iter().zip(c2).filter(|(a, b)| a != b).count();
        eprintln!(
            "{name}: with our offset {differ} of {} absmax codes differ",
            codes.len()
        );
    }
    let w_theirs = Nf4Weight {
        absmax: from_theirs,
        ..w2.clone()
    };
    let deq2: Vec<T> = w_theirs.dequantize().unwrap();
    first_mismatch(
        &format!("{name} dq dequant"),
        &bits(&deq2),
        &bits(&dequant_as_f32(&format!("{name}.dq.dequant"))),
    );
}

#[test]
fn code_tables_match_bitsandbytes() {
    let fx = Fixture::load();
    first_mismatch("nf4 code", &bits(&NF4_CODE), &bits(&fx.f32s("nf4_code")));
    first_mismatch(
        "dynamic map",
        &bits(blockwise8::dynamic_map()),
        &bits(&fx.f32s("dynamic_map")),
    );
}

#[test]
fn blockwise8_matches_bitsandbytes() {
    let fx = Fixture::load();
    let (codes, absmax) = blockwise8::quantize_blockwise(&fx.f32s("blockwise8.input"), 256);
    first_mismatch("blockwise8 codes", &codes, &fx.u8s("blockwise8.codes"));
    first_mismatch(
        "blockwise8 absmax",
        &bits(&absmax),
        &bits(&fx.f32s("blockwise8.absmax")),
    );
}

#[test]
fn nf4_matches_bitsandbytes_on_every_fixture() {
    let fx = Fixture::load();
    let cases = fx.cases();
    assert!(cases.len() >= 7, "fixture has {} cases", cases.len());
    for (name, (shape, dtype)) in &cases {
        check_case(&fx, name, *shape, dtype);
    }
}

#[test]
fn ties_go_to_the_lower_code() {
    // A block whose absmax is 1.0, holding every midpoint exactly.
    let mut row = vec![1.0f32];
    row.extend(NF4_CODE.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    row.resize(64, 0.0);
    let w = Nf4Weight::quantize(&row, (1, 64), 64, false).unwrap();
    let codes: Vec<u8> = w.packed.iter().flat_map(|b| [b >> 4, b & 15]).collect();
    for i in 0..15 {
        assert_eq!(
            codes[1 + i] as usize,
            i,
            "midpoint between codes {i} and {}",
            i + 1
        );
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(Nf4Weight::quantize(&[0f32; 10], (3, 4), 64, false).is_err());
    assert!(Nf4Weight::quantize(&[0f32; 12], (3, 4), 63, false).is_err());
    let w = Nf4Weight::quantize(&[0.5f32; 12], (3, 4), 64, false).unwrap();
    assert!(w.dequantize_into(&mut [0f32; 11]).is_err());
}
