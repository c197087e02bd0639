//! Intel DSA (Data Streaming Accelerator) through the Linux idxd user
//! interface, and a software model of the device that executes the same
//! descriptors (../shared/design/dsa.md has the facts and their sources).
//!
//! - [`abi`]: descriptors, completion records, opcodes, flags, statuses.
//! - [`copy`]: a copy cut into descriptors kept in flight together, faults
//!   resumed, errors finished on the CPU; the process's DSA counters.
//! - [`sysfs`]: devices and work queues found under a sysfs root.
//! - [`device`]: the process's queue (hardware or model) and the engine's
//!   entry point; opening a hardware queue.
//! - [`model`]: the device model: a thread that executes descriptors
//!   submitted to its portal ring and writes completion records.
//! - [`ops`]: memset and memcmp as MEMFILL and COMPARE descriptors.
//! - [`queue`]: a work queue as the engine submits to it: its portal and
//!   its count of descriptors in flight.

pub mod abi;
pub mod copy;
pub mod device;
pub mod model;
pub mod ops;
pub mod queue;
pub mod sysfs;
