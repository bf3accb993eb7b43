//! Work split over every core for the CPU forward's few-row steps (a query's products and
//! elementwise passes), on candle's barrier pool rather than rayon's.
//!
//! A query runs ~400 products back to back with short serial steps between them. rayon parks a
//! worker that finds no work within microseconds, so each product would wake every core again:
//! a futex wake and, on a virtual machine, an interrupt through the hypervisor per halted vCPU.
//! The barrier pool's workers spin a while before parking (`CANDLE_BARRIER_POOL_SPIN_LIMIT`
//! pauses: about a millisecond on recent Intel cores, whose pause is long, far less on AMD's),
//! which covers a query's gaps, and they are the workers candle's own elementwise ops
//! already keep warm. The caller runs tasks too; a call from inside a task runs inline.

/// `f(t)` for each task `t` in `0..tasks`, on every core; returns when all are done.
pub(crate) fn for_each(tasks: usize, f: impl Fn(usize) + Sync) {
    candle_core::utils::barrier_pool().execute_chunked(tasks, |range| range.for_each(&f));
}

/// [`for_each`] for a pass over `values` values, or on the calling thread alone where they are
/// fewer than [`SPLIT_MIN_VALUES`].
pub(crate) fn for_each_over(values: usize, tasks: usize, f: impl Fn(usize) + Sync) {
    if values < SPLIT_MIN_VALUES {
        (0..tasks).for_each(f);
    } else {
        for_each(tasks, f);
    }
}

/// Below this many values an elementwise pass costs less than handing it to the pool (candle
/// splits its own elementwise ops from the same size).
const SPLIT_MIN_VALUES: usize = 64 * 1024;

/// The threads [`for_each`] runs on: the pool's workers and the caller.
pub fn threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// A buffer the tasks of one [`for_each`] write into, each its own disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T>(*mut T);
// SAFETY: the tasks write disjoint ranges through it (the contract of `part`), and the buffer
// outlives the pool call, which waits for every worker.
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// Over `buf`'s allocation (its capacity, not only its length).
    pub(crate) fn new(buf: &mut Vec<T>) -> SharedOut<T> {
        SharedOut(buf.as_mut_ptr())
    }

    /// Elements `start .. start + len`.
    ///
    /// # Safety
    /// Inside the allocation, and written by no other task of the call.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn part(&self, start: usize, len: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Runs `f` on a pool of one rayon thread, so that the rayon parallelism inside it (candle's
/// RMSNorm, RoPE and softmax on the CPU) runs on that thread alone: for a query's few rows those
/// steps are too small to split, and on the global pool each would wake parked workers while
/// [`for_each`]'s spin on the same cores. Runs on the caller's thread when no such thread can be
/// made. The caller carries over what its thread-local settings `f` needs.
pub(crate) fn on_one_rayon_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "pagesight-query".into())
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}
