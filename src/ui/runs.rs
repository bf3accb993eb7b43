//! Recorded runs: the file format the Performance view reads and writes, the summary table, and the
//! CSV export. A run is an `AbSideResult` (settings, totals and the metrics series), so an A/B made
//! in the app, a benchmark JSON made on a GPU box, and an exported file all load the same way.
//!
//! Accepted shapes (every one must carry `schema` ≤ `SCHEMA_VERSION`, at the top or on each run):
//! - `{"schema": 1, "runs": [AbSideResult, …]}` (what the app exports; `results` or `sides` also work),
//! - `{"schema": 1, "a": AbSideResult, "b": AbSideResult}` (an `ab_finished` event line),
//! - `{"schema": 1, …AbSideResult fields}` (one run),
//! - `[{"schema": 1, …AbSideResult fields}, …]`,
//! - JSON lines of engine events (`--json` output): every `ab_side_finished` / `ab_finished` run.

use anyhow::{anyhow, bail, Context, Result};
use pagesight_engine::event::{AbSideResult, EventEnvelope};
use pagesight_engine::{Event, Stage, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// What `Export JSON` writes; `parse_runs` reads it back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedRuns {
    pub schema: u32,
    /// What made the file, for people reading it.
    pub producer: String,
    pub runs: Vec<AbSideResult>,
}

impl RecordedRuns {
    pub fn new(runs: Vec<AbSideResult>) -> Self {
        RecordedRuns {
            schema: SCHEMA_VERSION,
            producer: format!("pagesight {} gui", env!("CARGO_PKG_VERSION")),
            runs,
        }
    }
}

/// Reads a recorded-run file; the error names the file and what was wrong with it.
pub fn load_runs(path: &Path) -> Result<Vec<AbSideResult>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    parse_runs(&text).with_context(|| format!("{} is not a pagesight run file", path.display()))
}

/// Parses any accepted shape (see the module docs). Never returns an empty list without an error.
pub fn parse_runs(text: &str) -> Result<Vec<AbSideResult>> {
    let runs = match serde_json::from_str::<Value>(text) {
        Ok(doc) => runs_from_document(doc)?,
        Err(whole_err) => runs_from_event_lines(text).map_err(|lines_err| {
            anyhow!("not JSON ({whole_err}) and not JSON lines of engine events ({lines_err})")
        })?,
    };
    if runs.is_empty() {
        bail!("the file holds no runs");
    }
    Ok(runs)
}

fn check_schema(obj: &serde_json::Map<String, Value>, inherited: Option<u64>) -> Result<()> {
    let schema = match obj.get("schema") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| anyhow!("`schema` must be a number, found {v}"))?,
        None => {
            inherited.ok_or_else(|| anyhow!("no `schema` field: expected a pagesight run file"))?
        }
    };
    if schema > SCHEMA_VERSION as u64 {
        bail!("made by a newer pagesight (schema {schema}; this one reads up to {SCHEMA_VERSION}): update pagesight");
    }
    Ok(())
}

fn run_from_value(v: Value, inherited_schema: Option<u64>, what: &str) -> Result<AbSideResult> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("{what} is not an object"))?;
    check_schema(obj, inherited_schema).with_context(|| what.to_string())?;
    serde_json::from_value(v).with_context(|| format!("{what} is not a run result"))
}

fn runs_from_document(doc: Value) -> Result<Vec<AbSideResult>> {
    match doc {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| run_from_value(v, None, &format!("run #{}", i + 1)))
            .collect(),
        Value::Object(mut obj) => {
            check_schema(&obj, None)?;
            let schema = obj.get("schema").and_then(Value::as_u64);
            for key in ["runs", "results", "sides"] {
                if let Some(list) = obj.remove(key) {
                    let items = match list {
                        Value::Array(items) => items,
                        other => bail!("`{key}` must be a list of runs, found {}", kind(&other)),
                    };
                    return items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| run_from_value(v, schema, &format!("{key}[{i}]")))
                        .collect();
                }
            }
            if obj.contains_key("a") && obj.contains_key("b") {
                let a = obj.remove("a").unwrap_or_default();
                let b = obj.remove("b").unwrap_or_default();
                return Ok(vec![
                    run_from_value(a, schema, "side a")?,
                    run_from_value(b, schema, "side b")?,
                ]);
            }
            Ok(vec![run_from_value(Value::Object(obj), schema, "the run")?])
        }
        other => bail!(
            "expected an object or a list of runs, found {}",
            kind(&other)
        ),
    }
}

fn runs_from_event_lines(text: &str) -> Result<Vec<AbSideResult>> {
    let mut sides = Vec::new();
    let mut finished = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let env: EventEnvelope =
            serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        if env.schema > SCHEMA_VERSION {
            bail!(
                "line {} was made by a newer pagesight (schema {})",
                i + 1,
                env.schema
            );
        }
        match env.event {
            Event::AbSideFinished(r) => sides.push(r),
            Event::AbFinished { a, b } => finished = Some(vec![a, b]),
            _ => {}
        }
    }
    Ok(finished.unwrap_or(sides))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// One line of the summary table.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    pub label: String,
    pub pages: u64,
    pub wall_secs: f64,
    pub pages_per_sec: f64,
    /// Time the compute stream waited for copies.
    pub copy_critical_secs: f64,
    pub gpu_busy_pct: Option<f64>,
    /// pages/s relative to the first run.
    pub speedup: f64,
    /// Per-stage seconds per page, in `Stage::ALL` order.
    pub stage_ms_per_page: [f64; Stage::COUNT],
}

pub fn summary_rows(runs: &[&AbSideResult]) -> Vec<SummaryRow> {
    let base = runs.first().map(|r| r.pages_per_sec).unwrap_or(0.0);
    runs.iter()
        .map(|r| {
            let per_page = if r.pages > 0 {
                1e3 / r.pages as f64
            } else {
                0.0
            };
            let mut stage_ms_per_page = [0.0; Stage::COUNT];
            for st in Stage::ALL {
                stage_ms_per_page[st.index()] = r.stages.get(st) * per_page;
            }
            SummaryRow {
                label: r.label.clone(),
                pages: r.pages,
                wall_secs: r.wall_secs,
                pages_per_sec: r.pages_per_sec,
                copy_critical_secs: r.copy_critical_secs,
                gpu_busy_pct: r.gpu_busy.map(|b| b * 100.0),
                speedup: if base > 0.0 {
                    r.pages_per_sec / base
                } else {
                    f64::NAN
                },
                stage_ms_per_page,
            }
        })
        .collect()
}

/// The summary table as CSV (one header line, one line per run; stage columns in ms per page).
pub fn summary_csv(rows: &[SummaryRow]) -> String {
    let mut out =
        String::from("label,pages,wall_secs,pages_per_sec,copy_critical_secs,gpu_busy_pct,speedup");
    for st in Stage::ALL {
        out.push_str(&format!(",{}_ms_per_page", st.name()));
    }
    out.push('\n');
    for r in rows {
        let busy = r
            .gpu_busy_pct
            .map(|b| format!("{b:.2}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4},{},{:.4}",
            crate::export::csv::field(&r.label),
            r.pages,
            r.wall_secs,
            r.pages_per_sec,
            r.copy_critical_secs,
            busy,
            r.speedup
        ));
        for v in r.stage_ms_per_page {
            out.push_str(&format!(",{v:.4}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagesight_engine::event::Metrics;
    use pagesight_engine::{IngestSettings, StageTimes, TransferMode};

    fn run(label: &str, pages: u64, wall: f64) -> AbSideResult {
        let mut stages = StageTimes::default();
        stages.add(Stage::Render, wall * 0.25);
        stages.add(Stage::Vision, wall * 0.75);
        AbSideResult {
            label: label.into(),
            settings: IngestSettings::with_defaults(),
            pages,
            wall_secs: wall,
            pages_per_sec: pages as f64 / wall,
            copy_critical_secs: 0.5,
            gpu_busy: Some(0.9),
            gpu_idle_between_batches: None,
            stages,
            series: vec![Metrics {
                t: 0.25,
                pages_per_sec: 3.0,
                h2d_bytes_per_sec: 1e9,
                h2d_secs: 0.01,
                copy_critical_secs: 0.0,
                gpu_busy: None,
                transfer: TransferMode::Async,
                batch_size: 4,
                stages,
                gpu: None,
                gpu_unavailable: Some("no NVML".into()),
                gpus: Vec::new(),
                replicas: Vec::new(),
            }],
            replicas: Vec::new(),
        }
    }

    #[test]
    fn export_reads_back() {
        let runs = vec![run("a", 8, 4.0), run("b, fast", 8, 2.0)];
        let text = serde_json::to_string_pretty(&RecordedRuns::new(runs.clone())).unwrap();
        assert_eq!(parse_runs(&text).unwrap(), runs);
    }

    #[test]
    fn accepts_every_documented_shape() {
        let (a, b) = (run("a", 8, 4.0), run("b", 8, 2.0));
        let mut one = serde_json::to_value(&a).unwrap();
        one["schema"] = 1.into();
        assert_eq!(parse_runs(&one.to_string()).unwrap(), vec![a.clone()]);
        assert_eq!(parse_runs(&format!("[{one}]")).unwrap(), vec![a.clone()]);
        let ab = EventEnvelope::json_line(&Event::AbFinished {
            a: a.clone(),
            b: b.clone(),
        });
        assert_eq!(parse_runs(&ab).unwrap(), vec![a.clone(), b.clone()]);
        let lines = format!(
            "{}\n{}\n",
            EventEnvelope::json_line(&Event::Notice {
                message: "hi".into()
            }),
            EventEnvelope::json_line(&Event::AbSideFinished(b.clone()))
        );
        assert_eq!(parse_runs(&lines).unwrap(), vec![b]);
        let results = serde_json::json!({"schema": 1, "bench": "ingest", "results": [a]});
        assert_eq!(parse_runs(&results.to_string()).unwrap().len(), 1);
    }

    #[test]
    fn refuses_with_reasons() {
        let a = serde_json::to_value(run("a", 8, 4.0)).unwrap();
        let no_schema = serde_json::json!({"runs": [a.clone()]}).to_string();
        assert!(format!("{:#}", parse_runs(&no_schema).unwrap_err()).contains("no `schema`"));
        let newer = serde_json::json!({"schema": 99, "runs": [a]}).to_string();
        assert!(format!("{:#}", parse_runs(&newer).unwrap_err()).contains("newer pagesight"));
        let empty = serde_json::json!({"schema": 1, "runs": []}).to_string();
        assert!(format!("{:#}", parse_runs(&empty).unwrap_err()).contains("no runs"));
        assert!(parse_runs("{ truncated").is_err());
        let e = load_runs(Path::new("/nonexistent/run.json")).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/run.json"));
    }

    #[test]
    fn summary_and_csv() {
        let (a, b) = (run("a", 8, 4.0), run("b, fast", 8, 2.0));
        let rows = summary_rows(&[&a, &b]);
        assert_eq!(rows[0].speedup, 1.0);
        assert!((rows[1].speedup - 2.0).abs() < 1e-9);
        assert!((rows[1].stage_ms_per_page[Stage::Vision.index()] - 187.5).abs() < 1e-9);
        assert_eq!(rows[0].gpu_busy_pct, Some(90.0));
        let csv = summary_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("label,pages,wall_secs,pages_per_sec"));
        assert!(lines[0].ends_with("index_ms_per_page"));
        assert!(
            lines[2].starts_with("\"b, fast\",8,2.0000,4.0000"),
            "{}",
            lines[2]
        );
        assert_eq!(lines[1].split(',').count(), lines[0].split(',').count());
    }
}
