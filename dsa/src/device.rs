//! The process's DSA device: the work queues the `dsa` and `hybrid`
//! engines submit to (hardware queues from sysfs, or the model, opened at
//! first use by [`crate::open`]) and the options every operation through
//! it takes.
//!
//! A hardware queue is its character device `/dev/dsa/wqD.Q`: opening it
//! binds the process's address space (PASID); mapping its first page gives
//! the portal. Since the INTEL-SA-01084 fixes the mapping may need
//! CAP_SYS_RAWIO and fail with `EPERM`: descriptors then go through write(2)
//! on the file, the kernel submitting them. A dedicated queue admits one
//! process (`EBUSY` for the others). Neither the PASID nor the portal
//! survives fork (the portal is `VM_DONTCOPY`): [`crate::open`] opens the
//! queues at the first use in each process.

use crate::options::Options;
use crate::work_queue::Queue;

/// Queues a process opens at most (several only of shared queues).
pub const MAX_QUEUES: usize = 4;

/// What kind of device the queue belongs to (the `dsa.device` of the stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A DSA work queue of the machine.
    Hardware,
    /// The software model.
    Model,
}

impl Kind {
    /// As the stats name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hardware => "hardware",
            Kind::Model => "model",
        }
    }
}

/// The device in use: its queues and how operations through it are made.
#[derive(Debug)]
pub struct Active {
    queues: [Queue; MAX_QUEUES],
    n: usize,
    /// Options of every operation.
    pub options: Options,
    /// Hardware or model.
    pub kind: Kind,
}

impl Active {
    /// The device of the queues `opened`.
    pub fn new(opened: Opened, options: Options, kind: Kind) -> Active {
        let (queues, n) = opened.into_parts();
        Active { queues, n, options, kind }
    }

    /// Its queues (at least one).
    pub fn queues(&self) -> &[Queue] {
        &self.queues[..self.n]
    }
}

/// The queues an open produced.
#[derive(Debug, Default)]
pub struct Opened {
    queues: [Option<Queue>; MAX_QUEUES],
    shared: bool,
    n: usize,
}

impl Opened {
    pub(crate) fn push(&mut self, queue: Queue, shared: bool) {
        self.shared = shared;
        self.queues[self.n] = Some(queue);
        self.n += 1;
    }

    /// Whether the first queue is shared; `None` before the first.
    pub(crate) fn first_shared(&self) -> Option<bool> {
        (self.n > 0).then_some(self.shared)
    }

    /// How many queues it holds.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The queues, and how many are real (the rest never used).
    pub(crate) fn into_parts(self) -> ([Queue; MAX_QUEUES], usize) {
        let mut queues = self.queues;
        let all = core::array::from_fn(|i| queues[i].take().unwrap_or_else(Queue::unused));
        (all, self.n)
    }
}
