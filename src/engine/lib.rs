//! The engine: one background thread that owns the model, the index writers and the ingest
//! pipeline. Callers send `Command`s and read `Event`s over crossbeam channels.

pub mod command;
pub mod event;
pub mod gpu;
pub mod settings;
pub mod stage;

pub use command::{Command, SearchBackend, SearchMode, SearchRequest, VisualScorer};
pub use event::{Event, EventEnvelope, SCHEMA_VERSION};
pub use settings::{
    Compute, DType, DeviceChoice, DeviceSet, IngestSettings, LiveSettings, ModelSettings, Quant,
    QuantCacheSetting, QuantScope, TransferMode,
};
pub use stage::{Stage, StageClock, StageTimes};

pub mod ab;
pub mod control;
pub mod cuda_cards;
pub mod device_info;
pub mod download;
pub mod env_vars;
pub mod gpu_cards;
pub mod gpu_monitor;
pub mod handle;
pub mod ingest;
pub mod library_search;
pub mod metrics;
pub mod model_shelf;
pub mod open_indexes;
pub mod replica_figures;
pub mod resident_tiles;
pub mod search;
pub mod search_remote;
pub mod service;
pub mod thumbnail;
pub mod tile_shards;

pub use handle::{EngineHandle, EngineOptions};
