//! The loaded model an engine keeps between its jobs, so that the user pays a model load once:
//! an ingest leaves its model here when it ends and the next search embeds its query with it
//! (the same model made the index's pages), a search's query model serves the next ingest of the
//! same settings, and each job that finds nothing fitting loads its own and leaves it here after.
//! One model at a time: the newest replaces the one before.

use pagesight_model::colqwen::ColQwen;
use pagesight_model::settings::{DeviceChoice, ModelSettings};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct ModelShelf {
    slot: Arc<Mutex<Option<(ModelSettings, ColQwen)>>>,
}

impl ModelShelf {
    /// Leaves `model`, loaded with `settings`, for the next job (replacing what was here).
    pub fn put(&self, settings: ModelSettings, model: ColQwen) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((settings, model));
    }

    /// Takes the shelved model if it computes exactly what `want` asks for.
    pub fn take_fitting(&self, want: &ModelSettings) -> Option<(ModelSettings, ColQwen)> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some((have, model)) if fits(have, model, want) => slot.take(),
            _ => None,
        }
    }

    /// Whether a model is shelved (tests and diagnostics).
    pub fn is_empty(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

/// Whether `model`, loaded with `have`, gives the vectors `want` would and runs where `want`
/// says. The quantised-weight cache setting does not matter (it changes how a model loads, not
/// what it computes); a page budget left to the checkpoint fits the budget the model has.
fn fits(have: &ModelSettings, model: &ColQwen, want: &ModelSettings) -> bool {
    let budget = model.identity().max_visual_tokens;
    let budget_fits = match (want.max_visual_tokens, have.max_visual_tokens) {
        (Some(w), _) => w == budget,
        (None, h) => h.is_none(),
    };
    have.model == want.model
        && have.adapter == want.adapter
        && have.dtype == want.dtype
        && have.quant == want.quant
        && have.effective_quant_scope() == want.effective_quant_scope()
        && have.lora_in_effect() == want.lora_in_effect()
        && have.compute_in_effect() == want.compute_in_effect()
        && have.gpu_kernels == want.gpu_kernels
        && budget_fits
        && runs_on(want.device, model.device())
}

/// Whether a model on `device` is where `choice` would have loaded it.
fn runs_on(choice: DeviceChoice, device: &candle_core::Device) -> bool {
    match (choice, device.location()) {
        (DeviceChoice::Cpu, candle_core::DeviceLocation::Cpu) => true,
        (DeviceChoice::Cuda(n), candle_core::DeviceLocation::Cuda { gpu_id }) => n == gpu_id,
        (DeviceChoice::Auto, location) => {
            let auto_is_cuda = DeviceChoice::Auto.will_use_cuda();
            match location {
                candle_core::DeviceLocation::Cuda { gpu_id } => auto_is_cuda && gpu_id == 0,
                candle_core::DeviceLocation::Cpu => !auto_is_cuda,
                _ => false,
            }
        }
        _ => false,
    }
}
