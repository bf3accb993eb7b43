//! Plots shared by the live view and the run comparison: the same function draws one live run or an
//! overlay of several recorded ones, so the numbers mean the same thing in both places.

use super::runs::SummaryRow;
use egui::Color32;
use egui_plot::{Bar, BarChart, FilledArea, Legend, Line, Plot, PlotPoints, Points};
use pagesight_engine::event::{GpuSample, Metrics};
use pagesight_engine::Stage;

const PLOT_HEIGHT: f32 = 150.0;

/// One run's series as drawn.
pub struct SeriesRef<'a> {
    pub label: &'a str,
    pub series: &'a [Metrics],
    pub colour: Color32,
}

/// One line as drawn: a run's, or one card's of a run.
struct PlotLine {
    label: String,
    colour: Color32,
    points: Vec<[f64; 2]>,
}

/// One line per run.
fn per_run(runs: &[SeriesRef<'_>], value: impl Fn(&Metrics) -> Option<f64>) -> Vec<PlotLine> {
    runs.iter()
        .map(|r| PlotLine {
            label: r.label.to_string(),
            colour: r.colour,
            points: r
                .series
                .iter()
                .filter_map(|m| value(m).map(|v| [m.t, v]))
                .collect(),
        })
        .collect()
}

/// GPU figures: one line per run, or one per card of a run that sampled several cards
/// (`Metrics::gpus`), named `cuda:N` (after the run's label when several runs are shown).
fn per_card(runs: &[SeriesRef<'_>], value: impl Fn(&GpuSample) -> f64) -> Vec<PlotLine> {
    let mut lines = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let mut cards: Vec<usize> = Vec::new();
        for c in r.series.iter().flat_map(|m| &m.gpus) {
            if !cards.contains(&c.ordinal) {
                cards.push(c.ordinal);
            }
        }
        if cards.len() <= 1 {
            lines.extend(per_run(std::slice::from_ref(r), |m| {
                m.gpu.as_ref().map(&value)
            }));
            continue;
        }
        for (j, &n) in cards.iter().enumerate() {
            lines.push(PlotLine {
                label: if runs.len() == 1 {
                    format!("cuda:{n}")
                } else {
                    format!("{} cuda:{n}", r.label)
                },
                colour: run_colour(i + j * runs.len()),
                points: r
                    .series
                    .iter()
                    .filter_map(|m| {
                        let c = m.gpus.iter().find(|c| c.ordinal == n)?;
                        Some([m.t, value(&c.sample)])
                    })
                    .collect(),
            });
        }
    }
    lines
}

/// Distinct colours for runs, readable on dark and light backgrounds.
pub fn run_colour(i: usize) -> Color32 {
    const C: [Color32; 6] = [
        Color32::from_rgb(66, 150, 250),
        Color32::from_rgb(240, 120, 40),
        Color32::from_rgb(60, 180, 90),
        Color32::from_rgb(200, 70, 180),
        Color32::from_rgb(200, 180, 40),
        Color32::from_rgb(120, 120, 220),
    ];
    C[i % C.len()]
}

pub fn stage_colour(s: Stage) -> Color32 {
    match s {
        Stage::Discover => Color32::from_rgb(140, 140, 140),
        Stage::ModelLoad => Color32::from_rgb(100, 100, 110),
        Stage::Quantize => Color32::from_rgb(175, 160, 130),
        Stage::KernelCompile => Color32::from_rgb(190, 190, 200),
        Stage::Render => Color32::from_rgb(66, 150, 250),
        Stage::QueueWait => Color32::from_rgb(170, 200, 240),
        Stage::Stage => Color32::from_rgb(120, 200, 200),
        Stage::H2d => Color32::from_rgb(240, 120, 40),
        Stage::Vision => Color32::from_rgb(60, 180, 90),
        Stage::Lm => Color32::from_rgb(150, 110, 210),
        Stage::D2h => Color32::from_rgb(230, 190, 60),
        Stage::Replicas => Color32::from_rgb(110, 140, 90),
        Stage::Index => Color32::from_rgb(200, 70, 110),
    }
}

/// Pages/s, H2D GB/s, GPU utilisation and GPU memory over time, one line per run (on the GPU
/// plots one per card of a run that used several), in a 2×2 grid.
/// A plot whose data cannot exist on this machine shows why instead of an empty frame.
pub fn metric_plots(ui: &mut egui::Ui, id: &str, runs: &[SeriesRef<'_>], gpu_reason: Option<&str>) {
    if runs.iter().all(|r| r.series.is_empty()) {
        let why = "no samples yet: start an ingest or an A/B run";
        ui.columns(2, |cols| {
            unavailable(&mut cols[0], "pages/s", why);
            unavailable(&mut cols[1], "H2D GB/s", why);
        });
        ui.columns(2, |cols| {
            unavailable(&mut cols[0], "GPU utilisation %", why);
            unavailable(&mut cols[1], "GPU memory GiB", why);
        });
        return;
    }
    let any_gpu = runs
        .iter()
        .any(|r| r.series.iter().any(|m| m.gpu.is_some()));
    let any_h2d = runs
        .iter()
        .any(|r| r.series.iter().any(|m| m.h2d_bytes_per_sec > 0.0));
    let reason = gpu_reason
        .map(str::to_owned)
        .or_else(|| {
            runs.iter()
                .flat_map(|r| r.series)
                .find_map(|m| m.gpu_unavailable.clone())
        })
        .unwrap_or_else(|| "no GPU samples in this run".into());
    let link = egui::Id::unique((id, "x-link"));
    legend(ui, runs.iter().map(|r| (r.label, r.colour)));
    ui.columns(2, |cols| {
        let pages = per_run(runs, |m| Some(m.pages_per_sec));
        line_plot(&mut cols[0], id, "pages/s", "pages/s", link, &pages);
        if any_h2d {
            let h2d = per_run(runs, |m| Some(m.h2d_bytes_per_sec / 1e9));
            line_plot(&mut cols[1], id, "H2D GB/s", "GB/s", link, &h2d);
        } else {
            unavailable(
                &mut cols[1],
                "H2D GB/s",
                &format!("no host-to-device copies: {reason}"),
            );
        }
    });
    if !any_gpu {
        ui.columns(2, |cols| {
            unavailable(&mut cols[0], "GPU utilisation %", &reason);
            unavailable(&mut cols[1], "GPU memory", &reason);
        });
        return;
    }
    // NVML's share of busy time, 0..1, drawn as a percentage like the title says.
    let util = per_card(runs, |g| g.utilisation as f64 * 100.0);
    let memory = per_card(runs, |g| g.memory_used_bytes as f64 / (1u64 << 30) as f64);
    if util.len() > runs.len() {
        // Lines per card: their own legend.
        legend(ui, util.iter().map(|l| (l.label.as_str(), l.colour)));
    }
    ui.columns(2, |cols| {
        line_plot(&mut cols[0], id, "GPU utilisation %", "%", link, &util);
        line_plot(&mut cols[1], id, "GPU memory GiB", "GiB", link, &memory);
    });
}

/// One legend for the four plots (and one for the cards' lines): a legend inside each small
/// plot covered its lines.
fn legend<'a>(ui: &mut egui::Ui, lines: impl Iterator<Item = (&'a str, Color32)>) {
    ui.horizontal_wrapped(|ui| {
        for (label, colour) in lines {
            // A short stroke in the run's colour, like its line (painted: no font glyph needed).
            let (rect, _) = ui.allocate_exact_size(egui::vec2(18.0, 12.0), egui::Sense::hover());
            ui.painter().hline(
                rect.x_range(),
                rect.center().y,
                egui::Stroke::new(3.0, colour),
            );
            ui.label(label);
            ui.add_space(8.0);
        }
    });
}

fn unavailable(ui: &mut egui::Ui, title: &str, why: &str) {
    if !title.is_empty() {
        ui.label(egui::RichText::new(title).strong());
    }
    let size = egui::vec2(ui.available_width(), PLOT_HEIGHT);
    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
    let stroke = ui.visuals().widgets.noninteractive.bg_stroke;
    ui.painter()
        .rect_stroke(rect, 4.0, stroke, egui::StrokeKind::Inside);
    let text =
        egui::RichText::new(format!("not available: {why}")).color(ui.visuals().weak_text_color());
    ui.put(rect.shrink(12.0), egui::Label::new(text).wrap());
}

fn line_plot(
    ui: &mut egui::Ui,
    id: &str,
    title: &str,
    unit: &str,
    link: egui::Id,
    lines: &[PlotLine],
) {
    ui.label(egui::RichText::new(title).strong());
    Plot::new((id, title))
        .height(PLOT_HEIGHT)
        .link_axis(link, [true, false])
        .include_y(0.0)
        .x_axis_label("s")
        .y_axis_label(unit)
        .allow_scroll(false)
        .show(ui, |p| {
            for l in lines {
                if l.points.len() < 3 {
                    // A line needs two points; a short run still shows its samples.
                    p.points(
                        Points::new(l.label.as_str(), PlotPoints::new(l.points.clone()))
                            .radius(3.0)
                            .color(l.colour),
                    );
                }
                p.line(
                    Line::new(l.label.as_str(), PlotPoints::new(l.points.clone()))
                        .color(l.colour)
                        .width(1.5),
                );
            }
        });
}

/// Share of wall time per stage over time, stacked (one live run).
pub fn stage_area(ui: &mut egui::Ui, id: &str, series: &[Metrics]) {
    ui.label(egui::RichText::new("Where the time goes (share of wall time per interval)").strong());
    let samples: Vec<&Metrics> = series.iter().filter(|m| m.stages.total() > 0.0).collect();
    if samples.is_empty() {
        unavailable(
            ui,
            "",
            "no stage timings yet: start an ingest or an A/B run",
        );
        return;
    }
    let xs: Vec<f64> = samples.iter().map(|m| m.t).collect();
    let mut lower = vec![0.0; samples.len()];
    Plot::new((id, "stage-area"))
        .height(PLOT_HEIGHT + 30.0)
        .legend(Legend::default())
        .include_y(0.0)
        .include_y(100.0)
        .x_axis_label("s")
        .y_axis_label("% of wall")
        .allow_scroll(false)
        .show(ui, |p| {
            for st in Stage::ALL {
                let upper: Vec<f64> = samples
                    .iter()
                    .zip(&lower)
                    .map(|(m, lo)| lo + 100.0 * m.stages.get(st) / m.stages.total())
                    .collect();
                if upper.iter().zip(&lower).any(|(u, l)| u > l) {
                    p.add(
                        FilledArea::new(st.name(), &xs, &lower, &upper)
                            .fill_color(stage_colour(st).gamma_multiply(0.8)),
                    );
                }
                lower = upper;
            }
        });
}

/// Milliseconds per page by stage, one stacked horizontal bar per run.
pub fn stage_bars(ui: &mut egui::Ui, id: &str, rows: &[SummaryRow]) {
    ui.label(egui::RichText::new("Time per page by stage (ms)").strong());
    let mut charts: Vec<BarChart> = Vec::new();
    for st in Stage::ALL {
        let bars: Vec<Bar> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Bar::new(i as f64, r.stage_ms_per_page[st.index()]).name(&r.label))
            .collect();
        if bars.iter().all(|b| b.value <= 0.0) {
            continue;
        }
        let refs: Vec<&BarChart> = charts.iter().collect();
        let chart = BarChart::new(st.name(), bars)
            .color(stage_colour(st))
            .width(0.6)
            .horizontal()
            .stack_on(&refs);
        charts.push(chart);
    }
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    Plot::new((id, "stage-bars"))
        .height(40.0 + 36.0 * rows.len() as f32)
        .legend(Legend::default())
        .include_x(0.0)
        .y_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_axis_min_width(80.0)
        .allow_scroll(false)
        .show(ui, |p| {
            for c in charts {
                p.add(c);
            }
        });
}
