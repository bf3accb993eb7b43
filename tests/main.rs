//! One integration-test binary (one link step on slow CI machines): each area is a module.
//! The tests drive the developer's harnesses and the fault hooks, so they need the app's
//! `dev-tools` and `test-hooks` features: `scripts/test.sh` turns both on.

#[cfg(not(all(feature = "dev-tools", feature = "test-hooks")))]
compile_error!(
    "the integration tests need `--features dev-tools,test-hooks`; run them with scripts/test.sh"
);
mod crash;
mod engine;
mod fixture_meta;
mod hostile;
mod hub_download;
mod index;
mod loader;
mod model;
mod multi_device;
mod nf4;
mod qdrant;
mod quant_cache;
mod quant_scope;
mod search_library;
mod search_path;
mod search_results;
mod search_shards;
mod thumbnails;
mod ui;
mod ui_advanced;
mod ui_autopilot;
mod ui_cards;
mod ui_defaults;
mod ui_e2e;
mod ui_errors;
mod ui_first_batch;
mod ui_first_run;
mod ui_library;
mod ui_results;
mod ui_runs;
