//! The PDF loader: folder → model-ready pages.
//!
//! - `discover`: walk a folder for PDFs, identify each by its BLAKE3 content hash.
//! - `fault`: the documented read-error hook for tests.
//! - `pdfium`: render a page and read its text (in worker processes only: PDFium is not
//!   thread-safe).
//! - `worker`, `protocol`, `pool`: the render worker processes and how they are driven.
//! - `resize`, `preprocess`: the reference processor's smart_resize, bicubic resize, normalise
//!   and patchify.
//! - `pipeline`: parallel rendering into a bounded, ordered event stream.
//! - `staging`: packing pages into reusable staging buffers for the model.
//! - `thumbnail`: small page images for the app (in-process PDFium, one caller thread).

pub mod discover;
pub mod fault;
pub mod pdfium;
pub mod pipeline;
pub mod pool;
pub mod preprocess;
pub mod protocol;
pub mod resize;
pub mod staging;
pub mod thumbnail;
pub mod worker;

pub use discover::{discover, Discovery, PdfFile};
pub use pipeline::{Loader, LoaderEvent, LoaderOptions, PageJobFile, RenderedPage};
pub use preprocess::{patchify_into, preprocess_rgb, PreprocessConfig};
pub use resize::smart_resize;
pub use staging::{pack_batch, PixelBatch, StagingRing};
pub use thumbnail::{thumbnail, Thumbnail};
