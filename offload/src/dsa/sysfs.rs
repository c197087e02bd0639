//! Devices and work queues from sysfs (being written).
