//! The one list of pipeline stages. Events, benchmarks and the GUI all use it, so a number called
//! "h2d" means the same thing everywhere. For each batch the consumer's wall time is attributed to
//! exactly one stage at a time, so the stage times of a batch add up to its wall time.

use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Walking the folder and hashing files.
    Discover,
    /// Reading the model's weights onto the device (tokenizer and config included).
    ModelLoad,
    /// Quantising the weights, or reading (and writing) them in the quantised-weight cache.
    Quantize,
    /// Compiling the GPU kernels (ours and the library's) on their first launch, or loading them
    /// from the kernel caches.
    KernelCompile,
    /// Rendering in a worker process, resize included (seen by the consumer as waiting on it).
    Render,
    /// Waiting on the prefetch queue although pages were already rendered (channel hand-off).
    QueueWait,
    /// Packing / normalising pixels into the staging buffers.
    Stage,
    /// Host-to-device copy.
    H2d,
    /// Vision tower forward.
    Vision,
    /// Language model forward and projection head.
    Lm,
    /// Device-to-host copy of the embeddings.
    D2h,
    /// Waiting for the model replicas of a multi-device run (each replica's own stage times are
    /// in its figures); never used with one device.
    Replicas,
    /// Writing vectors and text into the index (commits included).
    Index,
}

impl Stage {
    pub const COUNT: usize = 13;
    pub const ALL: [Stage; Stage::COUNT] = [
        Stage::Discover,
        Stage::ModelLoad,
        Stage::Quantize,
        Stage::KernelCompile,
        Stage::Render,
        Stage::QueueWait,
        Stage::Stage,
        Stage::H2d,
        Stage::Vision,
        Stage::Lm,
        Stage::D2h,
        Stage::Replicas,
        Stage::Index,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Discover => "discover",
            Stage::ModelLoad => "model_load",
            Stage::Quantize => "quantize",
            Stage::KernelCompile => "kernel_compile",
            Stage::Render => "render",
            Stage::QueueWait => "queue_wait",
            Stage::Stage => "stage",
            Stage::H2d => "h2d",
            Stage::Vision => "vision",
            Stage::Lm => "lm",
            Stage::D2h => "d2h",
            Stage::Replicas => "replicas",
            Stage::Index => "index",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Seconds spent per stage. Serialised as a map `{stage name: seconds}`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes(pub [f64; Stage::COUNT]);

impl StageTimes {
    pub fn get(&self, s: Stage) -> f64 {
        self.0[s.index()]
    }
    pub fn add(&mut self, s: Stage, secs: f64) {
        self.0[s.index()] += secs;
    }
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }
    pub fn accumulate(&mut self, other: &StageTimes) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

impl Serialize for StageTimes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(Stage::COUNT))?;
        for st in Stage::ALL {
            m.serialize_entry(st.name(), &self.get(st))?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for StageTimes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, f64>::deserialize(d)?;
        let mut t = StageTimes::default();
        for st in Stage::ALL {
            if let Some(v) = m.get(st.name()) {
                t.0[st.index()] = *v;
            }
        }
        Ok(t)
    }
}

/// Attributes wall time to one stage at a time: `switch(stage)` closes the running stage and opens
/// the next, so nothing is counted twice and nothing between two stages is lost.
pub struct StageClock {
    current: Stage,
    since: Instant,
    times: StageTimes,
}

impl StageClock {
    pub fn start(stage: Stage) -> Self {
        StageClock {
            current: stage,
            since: Instant::now(),
            times: StageTimes::default(),
        }
    }
    /// Closes the running stage and starts `next`.
    pub fn switch(&mut self, next: Stage) {
        let now = Instant::now();
        self.times
            .add(self.current, (now - self.since).as_secs_f64());
        self.current = next;
        self.since = now;
    }
    /// Closes the running stage and returns the times so far, restarting the clock in `next`.
    pub fn take(&mut self, next: Stage) -> StageTimes {
        self.switch(next);
        std::mem::take(&mut self.times)
    }
    /// Moves up to `secs` of the time attributed so far from `from` to `to` (a part of a step
    /// that the step itself measured, e.g. the quantisation inside a model load).
    pub fn reattribute(&mut self, from: Stage, to: Stage, secs: f64) {
        let moved = secs.clamp(0.0, self.times.get(from));
        self.times.0[from.index()] -= moved;
        self.times.0[to.index()] += moved;
    }
    /// Re-divides the time attributed so far to `a` and `b` as `share_a` : 1 − `share_a` (used when
    /// the host's waits for the device cannot say which part of the device's work they covered,
    /// but device events measured the split).
    pub fn split(&mut self, a: Stage, b: Stage, share_a: f64) {
        let total = self.times.get(a) + self.times.get(b);
        let share_a = share_a.clamp(0.0, 1.0);
        self.times.0[a.index()] = total * share_a;
        self.times.0[b.index()] = total * (1.0 - share_a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn stage_times_roundtrip_json() {
        let mut t = StageTimes::default();
        t.add(Stage::H2d, 0.25);
        t.add(Stage::Lm, 1.0);
        let j = serde_json::to_string(&t).unwrap();
        assert!(j.contains("\"h2d\":0.25"));
        let back: StageTimes = serde_json::from_str(&j).unwrap();
        assert_eq!(back, t);
    }
    #[test]
    fn split_keeps_the_sum_and_sets_the_ratio() {
        let mut c = StageClock::start(Stage::Vision);
        c.times.add(Stage::Vision, 0.9);
        c.times.add(Stage::Lm, 0.1);
        c.split(Stage::Vision, Stage::Lm, 0.25);
        assert!((c.times.get(Stage::Vision) - 0.25).abs() < 1e-12);
        assert!((c.times.get(Stage::Lm) - 0.75).abs() < 1e-12);
    }
    #[test]
    fn clock_adds_up_to_wall_time() {
        let t0 = Instant::now();
        let mut c = StageClock::start(Stage::Render);
        std::thread::sleep(std::time::Duration::from_millis(5));
        c.switch(Stage::Vision);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let times = c.take(Stage::Render);
        let wall = t0.elapsed().as_secs_f64();
        assert!(times.get(Stage::Render) >= 0.004 && times.get(Stage::Vision) >= 0.004);
        assert!(times.total() <= wall + 1e-6);
        assert!(times.total() > wall * 0.9);
    }
}
