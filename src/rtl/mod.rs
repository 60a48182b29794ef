//! Programs on a cycle-accurate CV32E40P: the RTL of OpenHW's CV32E40P v2 with its PULP
//! extensions (RI5CY's successor, the core of GAP8's and PULP's clusters) simulated by Verilator.
//!
//! [`Rtl::init`] finds the tools ([`tools`]) and builds the project's harness once into the cache
//! ([`harness`]); [`Rtl::compile`] compiles C for the core with clang-19 ([`compile`]);
//! [`Rtl::run`] runs an ELF to its exit, a trap or its cycle limit ([`run`]). Every failure is an
//! [`RtlError`] naming the program, or the tool and what installs it.

mod compile;
mod error;
mod harness;
mod run;
mod tools;

pub use error::RtlError;
pub use harness::Rtl;
pub use run::{RunOutput, SimConfig};
