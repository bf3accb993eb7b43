//! The PDF loader: folder → model-ready pages.
//!
//! - `discover`: walk a folder for PDFs, identify each by its BLAKE3 content hash.
//! - `fault`: the documented read-error hook for tests.
//! - `pdfium`: render a page and read its text (in worker processes only: PDFium is not
//!   thread-safe).
//! - `worker`, `protocol`, `pool`: the render worker processes and how they are driven.
//! - `settings`: the loader's settings (workers, resolution, limits, prefetch).
//! - `pipeline`: parallel rendering into a bounded, ordered event stream; the workers resize,
//!   normalise and patchify with the model's own preprocessing (`pagesight_model::preprocess`).
//! - `staging`: packing pages into reusable staging buffers for the model.
//! - `thumbnail`: small page images for the app, from a render worker process of their own.

pub mod discover;
pub mod env_vars;
pub mod fault;
pub mod pdfium;
pub mod pipeline;
pub mod pool;
pub mod protocol;
pub mod settings;
pub mod staging;
pub mod thumbnail;
pub mod worker;

pub use discover::{discover, Discovery, PdfFile};
pub use pipeline::{Loader, LoaderEvent, LoaderOptions, PageJobFile, RenderedPage};
pub use settings::LoaderSettings;
pub use staging::{pack_batch, PixelBatch, StagingRing};
pub use thumbnail::{Thumbnail, ThumbnailRenderer, DEFAULT_THUMBNAIL_TIMEOUT};
