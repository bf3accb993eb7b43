//! The loader's preprocessing against the reference processor's own outputs.

use super::*;

// ---------------------------------------------------------------------------------------------
// Preprocessing against the reference
// ---------------------------------------------------------------------------------------------

#[test]
fn smart_resize_matches_reference_table() {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("smart_resize.json")).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 1000);
    let (mut refused, mut ties) = (0, 0);
    for c in cases {
        let n: Vec<Option<u64>> = c.as_array().unwrap().iter().map(|x| x.as_u64()).collect();
        let (h, w, f, mn, mx) = (
            n[0].unwrap(),
            n[1].unwrap(),
            n[2].unwrap(),
            n[3].unwrap(),
            n[4].unwrap(),
        );
        if (h % f) * 2 == f || (w % f) * 2 == f {
            ties += 1;
        }
        let got = smart_resize(h as u32, w as u32, f as u32, mn as u32, mx as u32);
        match (n[5], n[6]) {
            (Some(rh), Some(rw)) => {
                assert_eq!(
                    got.unwrap(),
                    (rh as u32, rw as u32),
                    "smart_resize({h}, {w}, {f}, {mn}, {mx})"
                )
            }
            _ => {
                refused += 1;
                let e = got
                    .expect_err(&format!("({h}, {w}) should be refused"))
                    .to_string();
                assert!(e.contains("aspect ratio"), "{e}");
            }
        }
    }
    assert!(
        refused > 10 && ties > 30,
        "table lacks refusals ({refused}) or ties ({ties})"
    );
}

#[test]
fn patchify_layout_matches_reference_exactly() {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("patchify/meta.json")).unwrap()).unwrap();
    let (h, w) = (
        meta["height"].as_u64().unwrap() as u32,
        meta["width"].as_u64().unwrap() as u32,
    );
    let rgb = std::fs::read(fixture("patchify/image.rgb")).unwrap();
    let reference: Vec<f32> = std::fs::read(fixture("patchify/pixel_values.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let cfg = PreprocessConfig::default();
    // No resize for this size: the reference kept it too.
    assert_eq!(cfg.target_size(h, w).unwrap(), (h, w));
    let grid: Vec<u32> = meta["grid_thw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(cfg.grid_thw(h, w).to_vec(), grid);
    let mut ours = vec![0.0f32; cfg.num_patches(h, w) * cfg.patch_dim()];
    assert_eq!(ours.len(), reference.len());
    patchify_into(&rgb, h, w, &cfg, &mut ours).unwrap();
    let max = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max <= 1e-6, "max abs difference {max}");
}

struct RefPage {
    pdf: PathBuf,
    page: u32,
    render_w: u32,
    render_h: u32,
    render_crc32: u32,
    grid: [u32; 3],
    /// The reference pixel_values, rebuilt from their 8-bit codes and the reference's table.
    pixel_values: Vec<f32>,
}

fn reference_pages() -> Vec<RefPage> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("pages/pages.json")).unwrap()).unwrap();
    let table: Vec<Vec<f32>> = v["normalise_table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    // Our normalisation must be the reference's, value for value.
    let ours = PreprocessConfig::default().normalise_table();
    for c in 0..3 {
        for b in 0..256 {
            assert_eq!(
                ours[c][b], table[c][b],
                "normalised value of byte {b}, channel {c}"
            );
        }
    }
    v["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let codes = image::open(fixture(p["codes_png"].as_str().unwrap()))
                .unwrap()
                .to_luma8();
            let (cols, rows) = codes.dimensions();
            assert_eq!(cols, 1176);
            let mut pixel_values = Vec::with_capacity((cols * rows) as usize);
            for row in codes.as_raw().chunks_exact(1176) {
                for (j, &code) in row.iter().enumerate() {
                    pixel_values.push(table[j / 392][code as usize]);
                }
            }
            let g: Vec<u32> = p["grid_thw"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            RefPage {
                pdf: repo().join(p["pdf"].as_str().unwrap()),
                page: p["page"].as_u64().unwrap() as u32,
                render_w: p["render_width"].as_u64().unwrap() as u32,
                render_h: p["render_height"].as_u64().unwrap() as u32,
                render_crc32: p["render_crc32"].as_u64().unwrap() as u32,
                grid: [g[0], g[1], g[2]],
                pixel_values,
            }
        })
        .collect()
}

/// (max, mean) absolute difference, in units of one 8-bit step (1/255 before normalisation).
fn error_in_steps(ours: &[f32], reference: &[f32]) -> (f32, f32) {
    let std = PreprocessConfig::default().image_std;
    let mut max = 0.0f32;
    let mut sum = 0.0f64;
    for (j, (a, b)) in ours.iter().zip(reference).enumerate() {
        let steps = (a - b).abs() * std[(j % 1176) / 392] * 255.0;
        max = max.max(steps);
        sum += steps as f64;
    }
    (max, (sum / ours.len() as f64) as f32)
}

#[test]
fn rendered_pages_match_reference_processor() {
    let cfg = PreprocessConfig::default();
    let refs = reference_pages();
    assert!(refs.len() >= 2);
    // In-process: our render against the one the reference processed, then our resize + patchify.
    let mut renderer = PdfRenderer::new().unwrap();
    for r in &refs {
        let rendered = renderer
            .render(&r.pdf, r.page - 1, 144.0, 40_000_000)
            .unwrap();
        let (img, text) = (rendered.image, rendered.text);
        assert_eq!(
            (img.width, img.height),
            (r.render_w, r.render_h),
            "{}",
            r.pdf.display()
        );
        assert!(!text.trim().is_empty());
        assert_eq!(
            crc32fast::hash(&img.rgb),
            r.render_crc32,
            "render of {} p{} differs",
            r.pdf.display(),
            r.page
        );
        let (h, w) = cfg.target_size(img.height, img.width).unwrap();
        assert_eq!(cfg.grid_thw(h, w), r.grid);
        let mut resized = Vec::new();
        resize_bicubic_rgb(
            &img.rgb,
            img.height as usize,
            img.width as usize,
            h as usize,
            w as usize,
            &mut resized,
        )
        .unwrap();
        let mut ours = vec![0.0f32; cfg.num_patches(h, w) * cfg.patch_dim()];
        patchify_into(&resized, h, w, &cfg, &mut ours).unwrap();
        assert_eq!(ours.len(), r.pixel_values.len());
        let (max, mean) = error_in_steps(&ours, &r.pixel_values);
        eprintln!(
            "{} p{}: max {max:.3} / mean {mean:.5} steps of 1/255",
            r.pdf.display(),
            r.page
        );
        assert!(
            max <= 2.0 + 1e-3 && mean < 0.05,
            "{} p{}: max {max} mean {mean}",
            r.pdf.display(),
            r.page
        );
    }
    // Through the worker processes: the pixels that cross the pipe give the same values.
    let paths: Vec<PathBuf> = refs.iter().map(|r| r.pdf.clone()).collect();
    let loader = Loader::start(jobs(&paths), &settings(2), &cfg).unwrap();
    let out = collect(&loader);
    for (i, r) in refs.iter().enumerate() {
        let p = out[&i]
            .pages
            .iter()
            .find(|p| p.page == r.page)
            .expect("page rendered");
        let mut ours = vec![0.0f32; cfg.num_patches(p.height, p.width) * cfg.patch_dim()];
        patchify_into(&p.rgb, p.height, p.width, &cfg, &mut ours).unwrap();
        let (max, _) = error_in_steps(&ours, &r.pixel_values);
        assert!(max <= 2.0 + 1e-3, "worker path: max {max}");
    }
}
