//! The environment variables this crate reads, in one place (the README lists every crate's).

/// Test hook (`test-hooks` builds only): `N:K` makes model replica N (0 = the first device) of a
/// multi-device ingest fail as a device error when handed its batch after K finished ones, so
/// dropping a replica and redoing its pages on the others can be tested without a GPU.
pub const REPLICA_FAIL: &str = "PAGESIGHT_REPLICA_FAIL";

/// Test hook (`test-hooks` builds only): a comma list of byte counts, one per device of a
/// search's device list (`--device cpu,cpu`), each the page tiles that device may hold in place
/// of its free memory, so that a test can force an uneven split of the shards or none at all.
pub const SHARD_CAPACITY: &str = "PAGESIGHT_SHARD_CAPACITY";

/// Test hook (`test-hooks` builds only): `N` makes the shard of device N (0 = the first of the
/// search's device list) fail to load as if its device were out of memory.
pub const SHARD_OOM: &str = "PAGESIGHT_SHARD_OOM";
