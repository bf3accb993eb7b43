//! One integration-test binary (one link step on slow CI machines): each area is a module.
mod ui;
