//! Opt-in timing of the forward pass by section (`bench embed --profile`).
//!
//! When enabled, every `mark` waits for the device and charges the time since the previous mark
//! to its label, so the table says where a forward spends its time on a GPU, where kernels are
//! otherwise asynchronous. Disabled (the default) a mark is one relaxed atomic load: no sync,
//! the forward keeps overlapping with copies.

use candle_core::{Device, Result};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

#[derive(Default)]
struct Table {
    last: Option<Instant>,
    /// label → (seconds, calls)
    sections: BTreeMap<&'static str, (f64, u64)>,
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

/// Charges the device time since the previous mark on this thread to `label`.
pub fn mark(device: &Device, label: &'static str) -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    device.synchronize()?;
    let now = Instant::now();
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(last) = t.last {
            let e = t.sections.entry(label).or_default();
            e.0 += (now - last).as_secs_f64();
            e.1 += 1;
        }
        t.last = Some(now);
    });
    Ok(())
}

/// Starts a timed region: waits for the device and resets the clock without charging anyone.
pub fn start(device: &Device) -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    device.synchronize()?;
    TABLE.with(|t| t.borrow_mut().last = Some(Instant::now()));
    Ok(())
}

/// The sections timed on this thread so far, (label, seconds, calls), largest first; clears them.
pub fn take() -> Vec<(String, f64, u64)> {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        t.last = None;
        let mut v: Vec<_> = std::mem::take(&mut t.sections)
            .into_iter()
            .map(|(k, (s, n))| (k.to_string(), s, n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_charge_the_time_between_them() {
        enable(true);
        let d = Device::Cpu;
        start(&d).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        mark(&d, "a").unwrap();
        mark(&d, "b").unwrap();
        mark(&d, "a").unwrap();
        let t = take();
        enable(false);
        assert_eq!(t[0].0, "a");
        assert_eq!(t[0].2, 2);
        assert!(t[0].1 >= 0.005);
        assert_eq!(t.iter().find(|r| r.0 == "b").unwrap().2, 1);
        mark(&d, "c").unwrap();
        assert!(take().is_empty(), "disabled marks record nothing");
    }
}
