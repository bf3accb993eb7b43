//! The environment variables this crate reads, in one place (the README lists every crate's).

/// Test hook (`test-hooks` builds only): `N:K` makes model replica N (0 = the first device) of a
/// multi-device ingest fail as a device error when handed its batch after K finished ones, so
/// dropping a replica and redoing its pages on the others can be tested without a GPU.
pub const REPLICA_FAIL: &str = "PAGESIGHT_REPLICA_FAIL";
