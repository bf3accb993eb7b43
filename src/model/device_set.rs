//! The devices an ingest runs its model replicas on: one device (`cpu`, `cuda:N`, `auto`), a
//! list (`cuda:0,2,3`, or `cpu,cpu` for two CPU replicas in tests), or every CUDA device
//! (`cuda:all`). The query model of a search always runs on one device: `primary`.

use crate::settings::DeviceChoice;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceSet {
    One(DeviceChoice),
    /// One replica per entry, in this order (an entry may repeat: two replicas on one device).
    List(Vec<DeviceChoice>),
    /// Every CUDA device of the machine, counted when the run starts.
    AllCuda,
}

impl Default for DeviceSet {
    fn default() -> Self {
        DeviceSet::One(DeviceChoice::default())
    }
}

impl From<DeviceChoice> for DeviceSet {
    fn from(d: DeviceChoice) -> Self {
        DeviceSet::One(d)
    }
}

impl DeviceSet {
    /// The first replica's device: the one whose model records the index's provenance, and the
    /// one a single-device caller (search, embed) uses.
    pub fn primary(&self) -> DeviceChoice {
        match self {
            DeviceSet::One(d) => *d,
            DeviceSet::List(l) => l.first().copied().unwrap_or_default(),
            DeviceSet::AllCuda => DeviceChoice::Cuda(0),
        }
    }

    /// Whether the replicas run on CUDA (decides the default precision and transfer mode).
    pub fn will_use_cuda(&self) -> bool {
        self.primary().will_use_cuda()
    }

    /// One device per replica. `cuda:all` counts the CUDA devices now; a list mixing the CPU
    /// and CUDA is refused, because the two compute in different activation dtypes and one
    /// index must hold vectors made one way.
    pub fn resolve(&self) -> Result<Vec<DeviceChoice>> {
        let devices = match self {
            DeviceSet::One(d) => vec![*d],
            DeviceSet::List(l) => l.clone(),
            DeviceSet::AllCuda => (0..cuda_device_count()?).map(DeviceChoice::Cuda).collect(),
        };
        if devices.is_empty() {
            bail!("no device to run on: cuda:all found no CUDA device");
        }
        let cuda = devices
            .iter()
            .filter(|d| matches!(d, DeviceChoice::Cuda(_)))
            .count();
        if cuda != 0 && cuda != devices.len() {
            bail!(
                "device list '{self}' mixes the CPU and CUDA: the replicas of one run must compute \
                 the same way (one index, one precision); list only cuda devices or only cpu"
            );
        }
        Ok(devices)
    }
}

/// How many CUDA devices the machine has; an error that says why in a build without CUDA.
fn cuda_device_count() -> Result<usize> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        let n = CudaContext::device_count()
            .map_err(|e| anyhow::anyhow!("counting CUDA devices for cuda:all: {e}"))?;
        Ok(n.max(0) as usize)
    }
    #[cfg(not(feature = "cuda"))]
    bail!(
        "device cuda:all requested, but this pagesight was built without the `cuda` feature; \
         rebuild with `cargo build --release --features cuda` or use --device cpu"
    )
}

impl FromStr for DeviceSet {
    type Err = anyhow::Error;
    /// `cuda:all`; a comma list where a bare number continues the CUDA list before it
    /// (`cuda:0,2,3`); or one device.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cuda:all" {
            return Ok(DeviceSet::AllCuda);
        }
        if !s.contains(',') {
            return Ok(DeviceSet::One(s.parse()?));
        }
        let mut list = Vec::new();
        for part in s.split(',').map(str::trim) {
            let after_cuda = matches!(list.last(), Some(DeviceChoice::Cuda(_)));
            let device = match part.parse::<usize>() {
                Ok(n) if after_cuda => DeviceChoice::Cuda(n),
                _ => part.parse::<DeviceChoice>()?,
            };
            if device == DeviceChoice::Auto {
                bail!("'auto' cannot be part of a device list ('{s}'): name each device");
            }
            list.push(device);
        }
        Ok(DeviceSet::List(list))
    }
}

impl fmt::Display for DeviceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSet::One(d) => write!(f, "{d}"),
            DeviceSet::List(l) => {
                let names: Vec<String> = l.iter().map(|d| d.to_string()).collect();
                f.write_str(&names.join(","))
            }
            DeviceSet::AllCuda => f.write_str("cuda:all"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_bare_numbers_continuing_cuda() {
        assert_eq!(
            "cuda:0,2,3".parse::<DeviceSet>().unwrap(),
            DeviceSet::List(vec![
                DeviceChoice::Cuda(0),
                DeviceChoice::Cuda(2),
                DeviceChoice::Cuda(3)
            ])
        );
        assert_eq!(
            "cpu,cpu".parse::<DeviceSet>().unwrap(),
            DeviceSet::List(vec![DeviceChoice::Cpu, DeviceChoice::Cpu])
        );
        assert_eq!("CUDA:ALL".parse::<DeviceSet>().unwrap(), DeviceSet::AllCuda);
        assert_eq!(
            "cuda:1".parse::<DeviceSet>().unwrap(),
            DeviceSet::One(DeviceChoice::Cuda(1))
        );
        assert!("cpu,3".parse::<DeviceSet>().is_err());
        assert!("auto,cpu".parse::<DeviceSet>().is_err());
        for s in ["cuda:0,cuda:2", "cpu,cpu", "cuda:all", "auto"] {
            let d: DeviceSet = s.parse().unwrap();
            assert_eq!(d.to_string().parse::<DeviceSet>().unwrap(), d);
        }
    }

    #[test]
    fn cpu_and_cuda_in_one_run_are_refused() {
        let e = DeviceSet::List(vec![DeviceChoice::Cpu, DeviceChoice::Cuda(0)])
            .resolve()
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mixes the CPU and CUDA"), "{e}");
        let two = "cpu,cpu".parse::<DeviceSet>().unwrap().resolve().unwrap();
        assert_eq!(two, vec![DeviceChoice::Cpu, DeviceChoice::Cpu]);
    }
}
