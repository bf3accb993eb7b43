//! Renders engine events on the terminal: indicatif progress bars for people, one JSON event per
//! line (`--json`, with the schema version) for programs.

use indicatif::{ProgressBar, ProgressStyle};
use pagesight_engine::event::{Event, EventEnvelope, FileStatus, IngestSummary};
use pagesight_engine::Stage;

pub struct EventPrinter {
    json: bool,
    bar: Option<ProgressBar>,
}

impl EventPrinter {
    pub fn new(json: bool) -> Self {
        EventPrinter { json, bar: None }
    }

    fn bar(&mut self) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} pages  {msg}",
                )
                .expect("valid template"),
            );
            b
        })
    }

    fn line(&mut self, s: String) {
        match &self.bar {
            // A bar drawn nowhere (stderr not a terminal) would drop the line with it.
            Some(b) if !b.is_hidden() => b.println(s),
            _ => eprintln!("{s}"),
        }
    }

    pub fn show(&mut self, ev: &Event) {
        if self.json {
            println!("{}", EventEnvelope::json_line(ev));
            return;
        }
        match ev {
            Event::IngestStarted { folder, index, .. } => self.line(format!(
                "ingesting {} into {}",
                folder.display(),
                index.display()
            )),
            Event::Discovered {
                files,
                new_or_changed,
                unchanged,
            } => self.line(format!(
                "{files} PDF files: {new_or_changed} new or changed, {unchanged} unchanged"
            )),
            Event::Progress(p) => {
                let b = self.bar();
                b.set_length(p.pages_total);
                b.set_position(p.pages_done);
                let eta = p
                    .eta_secs
                    .map(|s| format!(", ETA {:.0}s", s))
                    .unwrap_or_default();
                b.set_message(format!(
                    "{:.2} pages/s{eta}  files {}/{}",
                    p.pages_per_sec, p.files_done, p.files_total
                ));
            }
            Event::FileStatus(r) => match &r.status {
                FileStatus::Failed { page, reason } => {
                    let at = page.map(|p| format!(" (page {p})")).unwrap_or_default();
                    self.line(format!("FAILED {}{at}: {reason}", r.path.display()))
                }
                FileStatus::Duplicate { of } => self.line(format!(
                    "duplicate {}: same content as {}, indexed once",
                    r.path.display(),
                    of.display()
                )),
                FileStatus::Removed => {
                    self.line(format!("removed from index: {}", r.path.display()))
                }
                _ => {}
            },
            Event::PreparingGpuKernels { done: false, .. } => {
                self.line("preparing GPU kernels (first launch compiles them; ~30 s)…".into())
            }
            Event::PreparingGpuKernels { done: true, secs } => {
                self.line(format!("GPU kernels ready in {secs:.1} s"))
            }
            Event::Notice { message } => self.line(format!("note: {message}")),
            Event::Error {
                context, message, ..
            } => self.line(format!("error: {context}: {message}")),
            Event::IngestFinished(s) => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                print_summary(s);
            }
            _ => {}
        }
    }
}

pub fn print_summary(s: &IngestSummary) {
    println!(
        "{} {} pages in {:.1} s ({:.2} pages/s): {} files done, {} skipped (unchanged or duplicate), {} removed, {} failed",
        if s.cancelled { "cancelled after" } else { "ingested" },
        s.pages_ingested,
        s.wall_secs,
        s.pages_per_sec,
        s.files_done,
        s.files_skipped,
        s.files_removed,
        s.files_failed
    );
    let total = s.stages.total();
    if total > 0.0 {
        let parts: Vec<String> = Stage::ALL
            .iter()
            .filter(|st| s.stages.get(**st) > 0.0)
            .map(|st| format!("{} {:.1}%", st.name(), 100.0 * s.stages.get(*st) / total))
            .collect();
        println!("time by stage: {}", parts.join(", "));
    }
    for line in pagesight_engine::replica_figures::lines(&s.replicas, s.wall_secs) {
        println!("  {line}");
    }
    for f in &s.failures {
        if let FileStatus::Failed { page, reason } = &f.status {
            let at = page.map(|p| format!(" page {p}")).unwrap_or_default();
            println!("  failed: {}{at}: {reason}", f.path.display());
        }
    }
}
