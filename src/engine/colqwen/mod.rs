//! ColQwen2.5 in candle: one file per model part (see ../shared/reference.md).
