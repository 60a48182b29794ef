//! The cost model: cycles, energy, flash and RAM of every layer at every precision, from the
//! structure of the PULP kernels and a platform's parameters; and calibration of those parameters
//! from measurements. `docs/cost-model.md` gives the formulas.

pub mod calibrate;
mod kernel;
mod memory;
mod table;
mod tiling;

pub use kernel::{KernelCall, Precisions, call_cycles};
pub(crate) use memory::layer_flash;
pub use table::CostTable;
pub use table::Costs;
