//! The PDF loader: discovery, render worker processes, preprocessing, prefetching.

pub mod worker;
