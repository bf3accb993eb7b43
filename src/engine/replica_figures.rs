//! The figures of a multi-device run's replicas as one reads them: a card's NVML sample as text,
//! and the total over the replicas (the Performance view's total row, the terminal's and the
//! bench JSON's).

use super::event::{GpuSample, ReplicaSummary};
use serde::{Deserialize, Serialize};

const GIB: f64 = (1u64 << 30) as f64;

/// "GPU 87%, 41.2/79.6 GiB, PCIe rx 12.1 tx 0.3 GB/s" (the PCIe part only where NVML gave it).
pub fn card_text(g: &GpuSample) -> String {
    let pcie = match (g.pcie_rx_bytes_per_sec, g.pcie_tx_bytes_per_sec) {
        (None, None) => String::new(),
        (rx, tx) => format!(
            ", PCIe rx {} tx {} GB/s",
            gb(rx).unwrap_or_else(|| "-".into()),
            gb(tx).unwrap_or_else(|| "-".into())
        ),
    };
    format!(
        "GPU {:.0}%, {:.1}/{:.1} GiB{pcie}",
        100.0 * g.utilisation,
        g.memory_used_bytes as f64 / GIB,
        g.memory_total_bytes as f64 / GIB
    )
}

fn gb(bytes_per_sec: Option<f64>) -> Option<String> {
    bytes_per_sec.map(|b| format!("{:.1}", b / 1e9))
}

/// The replicas together: their pages and pages/s summed; over their distinct cards (replicas
/// sharing a card count it once) the mean utilisation, and memory and PCIe rates summed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaTotal {
    pub pages: u64,
    pub pages_per_sec: f64,
    /// How many distinct cards the card figures below cover (0: none sampled).
    pub cards: usize,
    pub mean_utilisation: Option<f32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub pcie_tx_bytes_per_sec: Option<f64>,
    pub pcie_rx_bytes_per_sec: Option<f64>,
}

impl ReplicaTotal {
    pub fn of(replicas: &[ReplicaSummary]) -> Self {
        let mut seen: Vec<&str> = Vec::new();
        let mut cards: Vec<&GpuSample> = Vec::new();
        for r in replicas {
            if let Some(g) = &r.gpu {
                if !seen.contains(&r.device.as_str()) {
                    seen.push(&r.device);
                    cards.push(g);
                }
            }
        }
        let sum_opt = |f: fn(&GpuSample) -> Option<f64>| {
            cards
                .iter()
                .filter_map(|&g| f(g))
                .fold(None, |acc: Option<f64>, v| Some(acc.unwrap_or(0.0) + v))
        };
        let n = cards.len();
        let (mean_utilisation, memory_used_bytes, memory_total_bytes) = if n == 0 {
            (None, None, None)
        } else {
            (
                Some(cards.iter().map(|g| g.utilisation).sum::<f32>() / n as f32),
                Some(cards.iter().map(|g| g.memory_used_bytes).sum::<u64>()),
                Some(cards.iter().map(|g| g.memory_total_bytes).sum::<u64>()),
            )
        };
        ReplicaTotal {
            pages: replicas.iter().map(|r| r.pages).sum(),
            pages_per_sec: replicas.iter().map(|r| r.pages_per_sec).sum(),
            cards: n,
            mean_utilisation,
            memory_used_bytes,
            memory_total_bytes,
            pcie_tx_bytes_per_sec: sum_opt(|g| g.pcie_tx_bytes_per_sec),
            pcie_rx_bytes_per_sec: sum_opt(|g| g.pcie_rx_bytes_per_sec),
        }
    }

    /// The total as the card figures of one sample (None when no card was sampled).
    pub fn as_sample(&self) -> Option<GpuSample> {
        Some(GpuSample {
            utilisation: self.mean_utilisation?,
            memory_used_bytes: self.memory_used_bytes?,
            memory_total_bytes: self.memory_total_bytes?,
            pcie_tx_bytes_per_sec: self.pcie_tx_bytes_per_sec,
            pcie_rx_bytes_per_sec: self.pcie_rx_bytes_per_sec,
        })
    }

    /// One line for a terminal: "total: 412 pages, 23.40 pages/s, 2 cards: GPU 85% (mean), …".
    pub fn describe(&self) -> String {
        let cards = match self.as_sample() {
            Some(g) => format!(
                ", {} cards: {} (utilisation: mean)",
                self.cards,
                card_text(&g)
            ),
            None => String::new(),
        };
        format!(
            "total: {} pages, {:.2} pages/s{cards}",
            self.pages, self.pages_per_sec
        )
    }
}

/// The terminal's lines for a run's replicas: one per replica, then the total (none with one
/// device).
pub fn lines(replicas: &[ReplicaSummary], wall_secs: f64) -> Vec<String> {
    if replicas.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = replicas.iter().map(|r| r.describe(wall_secs)).collect();
    out.push(ReplicaTotal::of(replicas).describe());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::StageTimes;

    fn card(util: f32, used_gib: u64, rx: Option<f64>) -> GpuSample {
        GpuSample {
            utilisation: util,
            memory_used_bytes: used_gib << 30,
            memory_total_bytes: 80 << 30,
            pcie_tx_bytes_per_sec: None,
            pcie_rx_bytes_per_sec: rx,
        }
    }

    fn replica(i: usize, device: &str, pps: f64, gpu: Option<GpuSample>) -> ReplicaSummary {
        ReplicaSummary {
            replica: i,
            device: device.into(),
            pages: 10 * (i as u64 + 1),
            batches: 1,
            pages_per_sec: pps,
            busy_secs: 1.0,
            h2d_bytes_per_sec: 0.0,
            stages: StageTimes::default(),
            gpu,
            failed: None,
        }
    }

    #[test]
    fn total_sums_pages_and_memory_and_averages_utilisation_over_distinct_cards() {
        let replicas = [
            replica(0, "cuda:0", 10.0, Some(card(0.9, 40, Some(2e9)))),
            replica(1, "cuda:2", 6.0, Some(card(0.5, 20, Some(1e9)))),
            // A second replica on card 2 shares its sample: the card counts once.
            replica(2, "cuda:2", 4.0, Some(card(0.5, 20, Some(1e9)))),
        ];
        let t = ReplicaTotal::of(&replicas);
        assert_eq!(t.pages, 60);
        assert!((t.pages_per_sec - 20.0).abs() < 1e-12);
        assert_eq!(t.cards, 2);
        assert!((t.mean_utilisation.unwrap() - 0.7).abs() < 1e-6);
        assert_eq!(t.memory_used_bytes, Some(60 << 30));
        assert_eq!(t.memory_total_bytes, Some(160 << 30));
        assert_eq!(t.pcie_rx_bytes_per_sec, Some(3e9));
        assert_eq!(t.pcie_tx_bytes_per_sec, None);
        let text = lines(&replicas, 1.0).join("\n");
        assert!(text.contains("replica 1 (cuda:2): 20 pages"), "{text}");
        assert!(
            text.contains("GPU 50%, 20.0/80.0 GiB, PCIe rx 1.0 tx - GB/s"),
            "{text}"
        );
        assert!(
            text.contains("total: 60 pages, 20.00 pages/s, 2 cards: GPU 70%, 60.0/160.0 GiB"),
            "{text}"
        );
    }

    #[test]
    fn cpu_replicas_have_no_card_figures() {
        let replicas = [replica(0, "cpu", 1.0, None), replica(1, "cpu", 2.0, None)];
        let t = ReplicaTotal::of(&replicas);
        assert_eq!(
            (t.cards, t.mean_utilisation, t.as_sample()),
            (0, None, None)
        );
        assert_eq!(t.describe(), "total: 30 pages, 3.00 pages/s");
        assert!(lines(&[], 1.0).is_empty());
    }
}
