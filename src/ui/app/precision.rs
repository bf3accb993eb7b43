//! What "best for this device" means at Start: the chosen index's own precision when its
//! statistics have arrived, else the measured best for the engine's device.

use super::*;
use pagesight_engine::settings::{default_precision, Precision};
use pagesight_engine::DeviceSet;

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
        let fp8 = cuda && self.fp8_cards();
        // An index whose recorded precision this version cannot read falls back to the device's
        // best: the engine then says which settings the index needs.
        default_precision(recorded, cuda, fp8)
            .or_else(|_| default_precision(None, cuda, fp8))
            .expect("the device's best needs no parsing")
    }

    /// Whether every card Start would use has FP8 tensor cores (by the engine's device report).
    fn fp8_cards(&self) -> bool {
        let cards = self.cards();
        let device = self.settings.model.device;
        let set = crate::ui::card_choice::chosen(device, &cards, &self.settings.unticked_cards)
            .unwrap_or(DeviceSet::One(device));
        pagesight_engine::cuda_cards::fp8_for(&set, &cards)
    }
}
