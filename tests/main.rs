//! One integration-test binary (one link step on slow CI machines): each area is a module.
mod crash;
mod engine;
mod fixture_meta;
mod hostile;
mod hub_download;
mod index;
mod loader;
mod model;
mod nf4;
mod quant_cache;
mod quant_scope;
mod ui;
mod ui_e2e;
mod ui_errors;
mod ui_runs;
