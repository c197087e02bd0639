//! Intel DSA (Data Streaming Accelerator) through the Linux idxd user
//! interface, and a software model of the device that executes the same
//! descriptors (their values are the kernel's, include/uapi/linux/idxd.h;
//! see abi.rs).
//!
//! From the floor up:
//! - [`abi`]: descriptors, completion records, opcodes, flags, statuses.
//! - [`options`]: what an operation is asked ([`options::Options`]) and
//!   what it did ([`options::Report`]); [`counters`]: the process's sums.
//! - [`sysfs`]: devices and work queues found under a sysfs root.
//! - [`model`]: the device model: a thread that executes descriptors
//!   submitted to its portal ring and writes completion records.
//! - [`work_queue`]: one work queue as the engine submits to it: its
//!   portal and its count of descriptors in flight; [`portal`]: opening a
//!   hardware queue's portal.
//! - [`submit`]: the queues one operation submits to: retries, then the
//!   next queue, then the CPU.
//! - [`inflight`]: completion records, their order and the wait for them,
//!   and the page touch that resumes a fault.
//! - [`copy`]: a copy cut into descriptors kept in flight together,
//!   faults resumed, errors finished on the CPU; [`ops`]: memset and
//!   memcmp as MEMFILL and COMPARE descriptors.
//! - [`device`]: the process's device (its queues and options);
//!   [`open`]: what the constructor found to open, opened at first use
//!   (and again in a fork child).
//!
//! The `dsa` and `hybrid` engines that copy through the device live
//! above it, in the engine crate.

pub mod abi;
pub mod copy;
pub mod counters;
pub mod device;
pub mod inflight;
pub mod model;
pub mod open;
pub mod ops;
pub mod options;
pub mod portal;
pub mod submit;
pub mod sysfs;
pub mod work_queue;
