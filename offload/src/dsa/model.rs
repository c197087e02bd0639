//! The device model (being written).
