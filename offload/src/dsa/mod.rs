//! Intel DSA (Data Streaming Accelerator) through the Linux idxd user
//! interface, and a software model of the device that executes the same
//! descriptors (their values are the kernel's, include/uapi/linux/idxd.h;
//! see abi.rs).
//!
//! - [`abi`]: descriptors, completion records, opcodes, flags, statuses.
//! - [`copy`]: a copy cut into descriptors kept in flight together, faults
//!   resumed, errors finished on the CPU; the process's DSA counters.
//! - [`sysfs`]: devices and work queues found under a sysfs root.
//! - [`device`]: the process's device (hardware queues or the model) and
//!   the engines' entry points; opening a hardware queue's portal.
//! - [`model`]: the device model: a thread that executes descriptors
//!   submitted to its portal ring and writes completion records.
//! - [`open`]: what the constructor found to open, opened at first use
//!   (and again in a fork child).
//! - [`ops`]: memset and memcmp as MEMFILL and COMPARE descriptors.
//! - [`queue`]: a work queue as the engine submits to it: its portal and
//!   its count of descriptors in flight.
//! - [`queues`]: the queues one operation submits to: retries, then the
//!   next queue, then the CPU.

pub mod abi;
pub mod copy;
pub mod device;
pub mod model;
pub mod open;
pub mod ops;
pub mod queue;
pub mod queues;
pub mod sysfs;
