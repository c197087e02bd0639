//! Intel DSA (Data Streaming Accelerator) through the Linux idxd user
//! interface, and a software model of the device that executes the same
//! descriptors (../shared/design/dsa.md has the facts and their sources).
//!
//! - [`abi`]: descriptors, completion records, opcodes, flags, statuses.
//! - [`sysfs`]: devices and work queues found under a sysfs root.
//! - [`model`]: the device model: a thread that executes descriptors
//!   submitted to its portal ring and writes completion records.

pub mod abi;
pub mod model;
pub mod sysfs;
