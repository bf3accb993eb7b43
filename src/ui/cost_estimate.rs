//! On the CPU, the first batch tells what the whole ingest will cost before it goes on: once the
//! first batch of a run is embedded the app pauses the run and shows the measured seconds per
//! page, the pages of the run and the estimated time, with Continue and Cancel.
//!
//! The measure is the first batch's embedding stages (`BatchTimings`: staging, copies, vision
//! tower, language model, index write), not the model load (reported before the first batch)
//! nor the wait for rendered pages (the render workers run beside the model; the first batch
//! also waits for them to start). Asked at most once per run, only for a run the user started
//! (never one the folder watch started in the background), only when every device of the run
//! is the CPU, never when the whole folder fitted in the first batch, and not for a run whose
//! rest takes less than [`ASK_FROM_SECS`] (nothing to decide: a question would only cost a
//! click).

use super::format;
use pagesight_engine::event::{DeviceInfo, Progress};
use pagesight_engine::{DeviceChoice, IngestSettings, Stage, StageTimes};

/// A run whose remaining time is estimated below this goes on without asking.
pub const ASK_FROM_SECS: f64 = 60.0;

/// The stages that embed and store a batch's pages: what a page costs once the run is going.
const EMBEDDING_STAGES: [Stage; 7] = [
    Stage::Stage,
    Stage::H2d,
    Stage::Vision,
    Stage::Lm,
    Stage::D2h,
    Stage::Replicas,
    Stage::Index,
];

/// Seconds a batch spent embedding and storing its pages.
pub fn embedding_secs(stages: &StageTimes) -> f64 {
    EMBEDDING_STAGES.iter().map(|&s| stages.get(s)).sum()
}

/// Whether the run computes on the CPU only: every device of its list is `cpu`, or `auto` on a
/// machine without a usable CUDA device (`device`: the engine's report; unknown counts as
/// not the CPU, so a GPU run is never held up).
pub fn runs_on_cpu(settings: &IngestSettings, device: Option<&DeviceInfo>) -> bool {
    let Ok(devices) = settings.replica_devices() else {
        return false;
    };
    !devices.is_empty()
        && devices.iter().all(|d| match d {
            DeviceChoice::Cpu => true,
            DeviceChoice::Auto => device.is_some_and(|i| !i.cuda_available),
            DeviceChoice::Cuda(_) => false,
        })
}

/// What the whole run will cost, from its first batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub secs_per_page: f64,
    /// Pages this run embeds (counted so far: a file not opened yet counts as the mean).
    pub pages_total: u64,
    pub pages_done: u64,
}

impl Estimate {
    /// `pages` embedded in `secs`, with the run's progress after them; None without pages.
    pub fn new(pages: usize, secs: f64, progress: &Progress) -> Option<Estimate> {
        (pages > 0 && secs.is_finite() && secs >= 0.0).then(|| Estimate {
            secs_per_page: secs / pages as f64,
            pages_total: progress.pages_total.max(progress.pages_done),
            pages_done: progress.pages_done,
        })
    }

    pub fn total_secs(&self) -> f64 {
        self.secs_per_page * self.pages_total as f64
    }

    pub fn remaining_secs(&self) -> f64 {
        self.secs_per_page * (self.pages_total - self.pages_done) as f64
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
enum Phase {
    /// Not a CPU run, or decided already: nothing to do.
    #[default]
    Off,
    /// A CPU run before its first batch, then with that batch's pages and embedding seconds.
    Watching { first: Option<(usize, f64)> },
    /// Paused for the user's answer.
    Asking(Estimate),
}

/// The once-per-run decision: watch a CPU run's first batch, then ask (or not) once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostCheck {
    phase: Phase,
}

impl CostCheck {
    /// The check for a run that has started; `on_cpu`: [`runs_on_cpu`].
    pub fn for_run(on_cpu: bool) -> CostCheck {
        CostCheck {
            phase: if on_cpu {
                Phase::Watching { first: None }
            } else {
                Phase::Off
            },
        }
    }

    /// A batch's timings (`Event::BatchTimings`); only the run's first counts.
    pub fn on_batch(&mut self, pages: usize, stages: &StageTimes) {
        if let Phase::Watching { first: f @ None } = &mut self.phase {
            *f = Some((pages, embedding_secs(stages)));
        }
    }

    /// The run's progress (`Event::Progress`); true when the run is to pause now and ask. Decides
    /// on the first progress after the first batch, once.
    pub fn on_progress(&mut self, p: &Progress) -> bool {
        let Phase::Watching {
            first: Some((pages, secs)),
        } = self.phase
        else {
            return false;
        };
        self.phase = Phase::Off;
        let Some(estimate) = Estimate::new(pages, secs, p) else {
            return false;
        };
        if p.pages_done >= p.pages_total || estimate.remaining_secs() < ASK_FROM_SECS {
            return false;
        }
        self.phase = Phase::Asking(estimate);
        true
    }

    /// The estimate waiting for an answer, if any.
    pub fn asking(&self) -> Option<&Estimate> {
        match &self.phase {
            Phase::Asking(e) => Some(e),
            _ => None,
        }
    }

    /// The user answered (Continue, Cancel, Resume) or the run ended: ask no more.
    pub fn settle(&mut self) {
        self.phase = Phase::Off;
    }
}

/// The user's answer to the estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Continue,
    Cancel,
}

/// The estimate and its two buttons.
pub fn show(ui: &mut egui::Ui, e: &Estimate) -> Option<Answer> {
    let mut answer = None;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(
            egui::RichText::new("Paused after the first batch: this runs on the CPU").strong(),
        );
        ui.label(format!(
            "{:.1} s per page (embedding, measured on the first batch) · {} pages in this run \
             (counted so far) · about {} in all, {} still to go",
            e.secs_per_page,
            e.pages_total,
            format::duration(e.total_secs()),
            format::duration(e.remaining_secs()),
        ));
        ui.horizontal(|ui| {
            if ui.button("Continue").clicked() {
                answer = Some(Answer::Continue);
            }
            if ui.button("Cancel").clicked() {
                answer = Some(Answer::Cancel);
            }
            ui.label(
                egui::RichText::new(
                    "Cancel keeps the pages already indexed; a later Start goes on from them",
                )
                .weak(),
            );
        });
    });
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagesight_engine::DeviceSet;

    fn progress(done: u64, total: u64) -> Progress {
        Progress {
            pages_done: done,
            pages_total: total,
            files_done: 0,
            files_total: 3,
            pages_per_sec: 0.1,
            eta_secs: None,
        }
    }

    /// A first batch of `pages` whose embedding took `secs`, after a long start-up.
    fn batch(secs: f64) -> StageTimes {
        let mut t = StageTimes::default();
        t.add(Stage::ModelLoad, 90.0);
        t.add(Stage::Render, 7.0);
        t.add(Stage::Stage, 0.1 * secs);
        t.add(Stage::Vision, 0.6 * secs);
        t.add(Stage::Lm, 0.3 * secs);
        t
    }

    #[test]
    fn the_estimate_is_the_first_batchs_embedding_time_per_page_times_the_pages() {
        let stages = batch(20.0);
        assert!(
            (embedding_secs(&stages) - 20.0).abs() < 1e-9,
            "load and render left out"
        );
        let e = Estimate::new(4, embedding_secs(&stages), &progress(4, 100)).unwrap();
        assert!((e.secs_per_page - 5.0).abs() < 1e-9);
        assert!((e.total_secs() - 500.0).abs() < 1e-9);
        assert!((e.remaining_secs() - 480.0).abs() < 1e-9);
        assert_eq!(Estimate::new(0, 1.0, &progress(0, 10)), None);
        // A total below what is done (an early guess) counts what is done.
        let e = Estimate::new(2, 4.0, &progress(6, 5)).unwrap();
        assert_eq!((e.pages_total, e.remaining_secs()), (6, 0.0));
    }

    #[test]
    fn a_cpu_run_asks_once_after_its_first_batch() {
        let mut c = CostCheck::for_run(true);
        assert!(!c.on_progress(&progress(0, 100)), "no batch yet");
        c.on_batch(4, &batch(20.0));
        c.on_batch(4, &batch(99.0)); // the second batch does not replace the first
        assert!(c.on_progress(&progress(4, 100)));
        let e = c.asking().expect("asking").clone();
        assert!((e.secs_per_page - 5.0).abs() < 1e-9);
        assert!(!c.on_progress(&progress(8, 100)), "asked once only");
        c.settle();
        assert_eq!(c.asking(), None);
        c.on_batch(4, &batch(20.0));
        assert!(
            !c.on_progress(&progress(12, 100)),
            "not again in the same run"
        );
    }

    #[test]
    fn no_question_on_a_gpu_for_a_folder_in_one_batch_or_a_short_run() {
        let mut gpu = CostCheck::for_run(false);
        gpu.on_batch(4, &batch(20.0));
        assert!(!gpu.on_progress(&progress(4, 100)));
        assert_eq!(gpu.asking(), None);

        let mut all = CostCheck::for_run(true);
        all.on_batch(4, &batch(20.0));
        assert!(
            !all.on_progress(&progress(4, 4)),
            "the whole folder in the first batch"
        );

        // 0.5 s a page, 100 pages to go: under a minute.
        let mut short = CostCheck::for_run(true);
        short.on_batch(4, &batch(2.0));
        assert!(!short.on_progress(&progress(4, 104)));
        assert_eq!(short.asking(), None);
    }

    #[test]
    fn only_a_run_whose_every_device_is_the_cpu_counts_as_on_the_cpu() {
        let info = |cuda: bool| DeviceInfo {
            name: "x".into(),
            cuda_built: cuda,
            cuda_available: cuda,
            vram_total_bytes: None,
            vram_used_bytes: None,
            driver: None,
            unavailable_reason: None,
            cards: Vec::new(),
        };
        let with = |device: DeviceChoice| {
            let mut s = IngestSettings::with_defaults();
            s.model.device = device;
            s
        };
        assert!(runs_on_cpu(&with(DeviceChoice::Cpu), None));
        assert!(runs_on_cpu(&with(DeviceChoice::Auto), Some(&info(false))));
        assert!(!runs_on_cpu(&with(DeviceChoice::Auto), Some(&info(true))));
        assert!(
            !runs_on_cpu(&with(DeviceChoice::Auto), None),
            "unknown: not held up"
        );
        assert!(!runs_on_cpu(
            &with(DeviceChoice::Cuda(0)),
            Some(&info(true))
        ));
        let mut two_cpus = with(DeviceChoice::Cpu);
        two_cpus.set_devices(&"cpu,cpu".parse::<DeviceSet>().unwrap());
        assert!(runs_on_cpu(&two_cpus, Some(&info(true))));
        let mut mixed = with(DeviceChoice::Cpu);
        mixed.set_devices(&"cpu,cuda:0".parse::<DeviceSet>().unwrap());
        assert!(!runs_on_cpu(&mixed, Some(&info(true))));
    }
}
