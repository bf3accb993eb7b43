//! What "best for this device" means at Start: the chosen index's own precision when its
//! statistics have arrived, else the measured best for the engine's device.

use super::*;

impl PagesightApp {
    /// The precision Start uses when "best for this device" is on: the chosen index's own (when
    /// its statistics have arrived), else the measured best for the engine's device.
    pub fn best_precision(&self) -> (DType, Quant, QuantScope) {
        let index = self.index_path();
        let recorded = self
            .status
            .index
            .as_ref()
            .filter(|st| Some(&st.path) == index.as_ref())
            .and_then(|st| st.provenance.as_ref())
            .and_then(|p| {
                Some((
                    p.dtype.parse().ok()?,
                    p.quant.parse().ok()?,
                    p.quant_scope.parse().ok()?,
                ))
            });
        recorded.unwrap_or_else(|| {
            let (dtype, quant) = pagesight_engine::settings::best_precision(self.cuda_usable());
            (dtype, quant, QuantScope::default())
        })
    }
}
