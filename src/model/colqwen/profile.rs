//! Opt-in timing of the forward pass by section (`bench embed --profile`).
//!
//! When enabled, every `mark` charges the time since the previous mark on its thread to its
//! label. On a CUDA device a mark records a timed event on the device's stream and nothing
//! waits: the sections are the card's own times between events, read when the table is taken,
//! so the forward keeps its pace and small sections are not inflated by synchronisation. On the
//! CPU a mark reads the clock. Disabled (the default) a mark is one relaxed atomic load.

use candle_core::{Device, Result};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// A point in a forward's time: the host clock, or an event in the device's stream.
#[derive(Clone)]
enum Stamp {
    Host(Instant),
    #[cfg(feature = "cuda")]
    Gpu(std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaEvent>),
}

impl Stamp {
    fn now(device: &Device) -> Result<Stamp> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(d) = device {
            use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
            let event = d
                .cuda_stream()
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(candle_core::Error::wrap)?;
            return Ok(Stamp::Gpu(std::sync::Arc::new(event)));
        }
        let _ = device;
        Ok(Stamp::Host(Instant::now()))
    }

    /// Seconds from `self` to `end` (waits for both events on a GPU).
    fn seconds_to(&self, end: &Stamp) -> Result<f64> {
        match (self, end) {
            (Stamp::Host(a), Stamp::Host(b)) => Ok((*b - *a).as_secs_f64()),
            #[cfg(feature = "cuda")]
            (Stamp::Gpu(a), Stamp::Gpu(b)) => {
                Ok(a.elapsed_ms(b).map_err(candle_core::Error::wrap)? as f64 / 1e3)
            }
            #[cfg(feature = "cuda")]
            _ => candle_core::bail!("profile: a section spans two kinds of device"),
        }
    }
}

/// Sections whose events are read when the table is taken, at most this many at a time: past
/// it they are read at the next mark (a wait, rare enough not to change the picture).
const PENDING_MAX: usize = 4096;

#[derive(Default)]
struct Table {
    last: Option<Stamp>,
    /// Sections whose end may not have happened yet: (label, start, end).
    pending: Vec<(&'static str, Stamp, Stamp)>,
    /// label → (seconds, calls)
    sections: BTreeMap<&'static str, (f64, u64)>,
}

impl Table {
    fn settle(&mut self) -> Result<()> {
        for (label, start, end) in std::mem::take(&mut self.pending) {
            let e = self.sections.entry(label).or_default();
            e.0 += start.seconds_to(&end)?;
            e.1 += 1;
        }
        Ok(())
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// Switches section timing on or off for the whole process.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Charges the time since the previous mark on this thread to `label`.
pub fn mark(device: &Device, label: &'static str) -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    let now = Stamp::now(device)?;
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(last) = t.last.take() {
            t.pending.push((label, last, now.clone()));
        }
        t.last = Some(now);
        if t.pending.len() >= PENDING_MAX {
            t.settle()?;
        }
        Ok(())
    })
}

/// Starts a timed region: the clock restarts here without charging anyone.
pub fn start(device: &Device) -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    let now = Stamp::now(device)?;
    TABLE.with(|t| t.borrow_mut().last = Some(now));
    Ok(())
}

/// This thread's timing so far (its sections and its last mark), taken from it, for another
/// thread to go on with ([`attach`]).
pub struct Detached(Table);

/// Takes this thread's timing off it (see [`Detached`]).
pub fn detach() -> Detached {
    Detached(TABLE.with(|t| std::mem::take(&mut *t.borrow_mut())))
}

/// Makes `d` this thread's timing: its marks go on from `d`'s last one and add to its sections.
/// This thread's own timing, if any, is replaced: detach it first to keep it.
pub fn attach(d: Detached) {
    TABLE.with(|t| *t.borrow_mut() = d.0);
}

/// The sections timed on this thread so far, (label, seconds, calls), largest first; clears them.
pub fn take() -> Result<Vec<(String, f64, u64)>> {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.last = None;
        t.settle()?;
        let mut v: Vec<_> = std::mem::take(&mut t.sections)
            .into_iter()
            .map(|(k, (s, n))| (k.to_string(), s, n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: `enable` is process-wide, and tests run in parallel.
    #[test]
    fn marks_charge_the_time_between_them() {
        enable(true);
        let d = Device::Cpu;
        start(&d).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        mark(&d, "a").unwrap();
        mark(&d, "b").unwrap();
        mark(&d, "a").unwrap();
        let t = take().unwrap();
        assert_eq!(t[0].0, "a");
        assert_eq!(t[0].2, 2);
        assert!(t[0].1 >= 0.005);
        assert_eq!(t.iter().find(|r| r.0 == "b").unwrap().2, 1);

        // A long run reads its sections on the way, and loses none.
        start(&d).unwrap();
        for _ in 0..PENDING_MAX + 10 {
            mark(&d, "step").unwrap();
        }
        TABLE.with(|t| assert!(t.borrow().pending.len() < PENDING_MAX));
        let t = take().unwrap();
        assert_eq!(t[0].2, (PENDING_MAX + 10) as u64);

        // A forward that goes on on another thread: its sections come back with the timing.
        start(&d).unwrap();
        mark(&d, "here").unwrap();
        let timing = detach();
        let timing = std::thread::spawn(move || {
            attach(timing);
            mark(&Device::Cpu, "there").unwrap();
            detach()
        })
        .join()
        .unwrap();
        attach(timing);
        mark(&d, "back").unwrap();
        let t = take().unwrap();
        for label in ["here", "there", "back"] {
            assert_eq!(
                t.iter().filter(|r| r.0 == label).count(),
                1,
                "{label}: {t:?}"
            );
        }

        enable(false);
        mark(&d, "c").unwrap();
        assert!(take().unwrap().is_empty(), "disabled marks record nothing");
    }
}
