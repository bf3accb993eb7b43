//! What "best for this device" means at Start: the chosen index's own precision when its
//! statistics have arrived, else the measured best for the engine's device.

use super::*;
use pagesight_engine::settings::{default_precision, Precision};

impl PagesightApp {
    /// The precision Start uses when "best for this device" is on: the chosen index's own (when
    /// its statistics have arrived), else the measured best for the engine's device.
    pub fn best_precision(&self) -> Precision {
        let index = self.index_path();
        let recorded = self
            .status
            .index
            .as_ref()
            .filter(|st| Some(&st.path) == index.as_ref())
            .and_then(|st| st.provenance.as_ref());
        let cuda = self.cuda_usable();
        // An index whose recorded precision this version cannot read falls back to the device's
        // best: the engine then says which settings the index needs.
        default_precision(recorded, cuda)
            .or_else(|_| default_precision(None, cuda))
            .expect("the device's best needs no parsing")
    }
}
