//! The cost model: cycles, energy, flash and RAM of every layer at every precision, from the
//! structure of the PULP kernels and a platform's parameters; and calibration of those parameters
//! from measurements. `docs/cost-model.md` gives the formulas.

pub mod calibrate;
mod kernel;
mod memory;
mod table;
mod tiling;

pub use kernel::{KernelCall, Precisions, call_cycles, inside_taps, kernel_cycles};
pub use memory::{buffer_bytes, layer_flash, live_buffers};
pub use table::{CostTable, Costs, LayerCosts};
pub use tiling::{LayerTiming, TilePlan, time_layer};
