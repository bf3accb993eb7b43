//! The transfer-mode choice (how pages reach the GPU), drawn the same way by the Corpus form's
//! Advanced section and the Performance view's toggle, and why it cannot be chosen here.

use pagesight_engine::event::DeviceInfo;
use pagesight_engine::TransferMode;

/// Why the transfer modes cannot be chosen here, or `None` when they can.
pub fn transfer_unavailable(device: Option<&DeviceInfo>) -> Option<String> {
    match device {
        None => Some("waiting for the engine's device report".into()),
        Some(d) if d.cuda_available => None,
        Some(d) => Some(d.unavailable_reason.clone().unwrap_or_else(|| {
            if d.cuda_built {
                "no CUDA device found".into()
            } else {
                "this pagesight was built without CUDA".into()
            }
        })),
    }
}

/// What one mode does, in a few words (the buttons' hover text).
fn describe(mode: TransferMode) -> &'static str {
    match mode {
        TransferMode::Pageable => "ordinary memory, blocking copy (the only mode without CUDA)",
        TransferMode::Sync => "pinned memory, blocking copy, then compute",
        TransferMode::Async => "pinned memory, the copy overlapped with compute",
        TransferMode::AsyncU8 => {
            "as async, but 8-bit pixels cross the bus and are normalised on the GPU"
        }
    }
}

/// One button per mode; disabled with `blocked`'s reason when set. Returns the mode the user
/// clicked (already written to `mode`), if any.
pub fn show(
    ui: &mut egui::Ui,
    mode: &mut TransferMode,
    blocked: Option<&str>,
) -> Option<TransferMode> {
    let mut clicked = None;
    for m in TransferMode::ALL {
        let button = egui::Button::selectable(*mode == m, m.name());
        let resp = ui.add_enabled(blocked.is_none(), button);
        let resp = match blocked {
            Some(why) => resp.on_disabled_hover_text(why),
            None => resp.on_hover_text(describe(m)),
        };
        if resp.clicked() {
            *mode = m;
            clicked = Some(m);
        }
    }
    clicked
}
