//! Training with burn: datasets, models built from the graph IR, floating-point training,
//! quantization-aware fine-tuning and measured sensitivity.

pub mod data;
pub mod measure;
pub mod model;
pub(crate) mod npy;
pub mod npz;
pub mod presets;
pub mod qat;
pub(crate) mod trainer;
pub(crate) mod zip;

pub use data::DataError;
pub use data::{Dataset, Split};
pub use model::GraphNet;
pub use model::{QuantSpec, Ranges};
pub use trainer::TrainState;
pub use trainer::{
    Checkpoint, TrainConfig, evaluate, fit, fit_until, predictions, training_device,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("checkpoint {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Config(String),
}
