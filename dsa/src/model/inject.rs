//! Page-fault rules and injected error statuses.

/// Which buffer of a descriptor an offset counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// MEMMOVE's source, COMPARE's first buffer (`src`): reads.
    Source,
    /// MEMMOVE's and MEMFILL's destination (writes), COMPARE's second
    /// buffer (`dst`, a read).
    Destination,
}

/// Where a [`FaultRule`] faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultTarget {
    /// Byte `offset` of the descriptor's source or destination. Matches the
    /// MEMMOVE, MEMFILL (destination only) and COMPARE descriptors whose
    /// transfer size is above `offset`; the fault is at that byte whatever
    /// the copy direction.
    Offset {
        /// The buffer.
        side: Side,
        /// The byte, from the start of the buffer.
        offset: u32,
    },
    /// Any byte in `[start, end)` that a descriptor accesses: its source,
    /// its destination, or a batch's descriptor list. The fault is at the
    /// first such byte in the order the operation goes (the highest one
    /// for a descending copy).
    Range {
        /// First address.
        start: u64,
        /// One past the last address.
        end: u64,
    },
}

/// A page-fault injection. Descriptors are matched in the order the model
/// executes them (a batch's list read with the batch, then its members).
/// Of the descriptors the target matches, the first `skip` pass; then every
/// `period`-th one (the first of them included) faults, `count` times in
/// all (`None`: until [`Model::clear_faults`](super::Model::clear_faults)).
///
/// When several rules fault one descriptor, the fault first in the
/// operation's order is reported and only its rule is charged; the others
/// stay armed and fault the next descriptor they match. A COMPARE that finds
/// a difference before the faulting byte never reaches it: the rule stays
/// armed. With BOF every fault the operation reaches is charged (taken and
/// resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultRule {
    /// Where.
    pub target: FaultTarget,
    /// Matching descriptors to let pass first.
    pub skip: u32,
    /// Fault every `period`-th matching descriptor (at least 1).
    pub period: u32,
    /// Faults in all; `None` for until cleared.
    pub count: Option<u32>,
}

impl FaultRule {
    /// One fault at byte `offset` of `side` of the next descriptor that has it.
    pub const fn at(side: Side, offset: u32) -> FaultRule {
        FaultRule { target: FaultTarget::Offset { side, offset }, skip: 0, period: 1, count: Some(1) }
    }

    /// Faults on every access to `[start, end)` until cleared.
    pub const fn range(start: u64, end: u64) -> FaultRule {
        FaultRule { target: FaultTarget::Range { start, end }, skip: 0, period: 1, count: None }
    }

    /// `n` faults in all.
    pub const fn times(self, n: u32) -> FaultRule {
        FaultRule { count: Some(n), ..self }
    }

    /// Faults until cleared.
    pub const fn until_cleared(self) -> FaultRule {
        FaultRule { count: None, ..self }
    }

    /// Lets the first `n` matching descriptors pass.
    pub const fn skipping(self, n: u32) -> FaultRule {
        FaultRule { skip: n, ..self }
    }

    /// Faults every `period`-th matching descriptor only.
    pub const fn every(self, period: u32) -> FaultRule {
        FaultRule { period, ..self }
    }

    /// Why the rule can never fault, if it cannot.
    pub(super) fn check(&self) -> Option<&'static str> {
        match (self.target, self.period, self.count) {
            (_, 0, _) => Some("a fault rule's period must be at least 1"),
            (_, _, Some(0)) => Some("a fault rule's count must be at least 1"),
            (FaultTarget::Range { start, end }, _, _) if start >= end => Some("a fault range must not be empty"),
            _ => None,
        }
    }
}

/// One memory access of a descriptor: `len` bytes from `base`, which the
/// operation goes through from the first byte up (or from the last one
/// down). Accesses are listed in the order the operation makes them at the
/// same byte (reads before the write).
#[derive(Clone, Copy, Debug)]
pub(super) struct Access {
    /// The buffer an offset rule names (none for a batch's list).
    pub side: Option<Side>,
    pub base: u64,
    pub len: u64,
    pub write: bool,
}

/// A fault a rule would inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fault {
    /// The rule's identity (for [`Injections::charge`]).
    pub rule: u64,
    /// The faulting byte's offset in its access.
    pub pos: u64,
    /// The faulting address.
    pub addr: u64,
    /// Whether the access is a write.
    pub write: bool,
    /// Which access (order among faults at the same offset).
    access: usize,
}

#[derive(Debug)]
struct Armed {
    id: u64,
    rule: FaultRule,
    seen: u64,
    armed: bool,
}

#[derive(Debug)]
struct ErrorRule {
    status: u8,
    left: u32,
    opcode: Option<u8>,
}

/// The injections in force.
#[derive(Debug, Default)]
pub(super) struct Injections {
    next_id: u64,
    faults: Vec<Armed>,
    errors: Vec<ErrorRule>,
}

impl Injections {
    pub fn new(rules: &[FaultRule]) -> Injections {
        let mut inj = Injections::default();
        for rule in rules {
            inj.add_fault(*rule);
        }
        inj
    }

    /// Adds a rule (a period of 0 counts as 1; a rule that can never fault
    /// is dropped).
    pub fn add_fault(&mut self, mut rule: FaultRule) {
        rule.period = rule.period.max(1);
        if rule.check().is_none() {
            self.next_id += 1;
            self.faults.push(Armed { id: self.next_id, rule, seen: 0, armed: false });
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub fn add_error(&mut self, status: u8, count: u32, opcode: Option<u8>) {
        self.errors.push(ErrorRule { status, left: count, opcode });
    }

    pub fn clear_errors(&mut self) {
        self.errors.clear();
    }

    /// The status to inject into a descriptor of `opcode`, if any (and
    /// charges it).
    pub fn take_error(&mut self, opcode: u8) -> Option<u8> {
        let i = self.errors.iter().position(|e| e.opcode.is_none_or(|op| op == opcode))?;
        let rule = &mut self.errors[i];
        rule.left -= 1;
        let status = rule.status;
        if rule.left == 0 {
            self.errors.remove(i);
        }
        Some(status)
    }

    /// Matches a descriptor making `accesses` (in `descending` order)
    /// against every rule: the faults of the armed rules it matches, in the
    /// order the operation would meet them.
    pub fn faults(&mut self, accesses: &[Access], descending: bool) -> Vec<Fault> {
        let mut found = Vec::new();
        for state in &mut self.faults {
            let Some(fault) = first_fault(state.rule.target, accesses, descending) else { continue };
            state.seen += 1;
            let skip = u64::from(state.rule.skip);
            if state.seen > skip && (state.seen - skip - 1) % u64::from(state.rule.period) == 0 {
                state.armed = true;
            }
            if state.armed {
                found.push(Fault { rule: state.id, ..fault });
            }
        }
        if descending {
            found.sort_by_key(|f| (core::cmp::Reverse(f.pos), f.access));
        } else {
            found.sort_by_key(|f| (f.pos, f.access));
        }
        found
    }

    /// Charges the rule that injected `fault`: disarmed, one fewer left.
    pub fn charge(&mut self, fault: &Fault) {
        let Some(i) = self.faults.iter().position(|s| s.id == fault.rule) else { return };
        let state = &mut self.faults[i];
        state.armed = false;
        if let Some(left) = &mut state.rule.count {
            *left -= 1;
            if *left == 0 {
                self.faults.remove(i);
            }
        }
    }
}

/// Where `target` faults the accesses, if it matches them (`rule` unset).
fn first_fault(target: FaultTarget, accesses: &[Access], descending: bool) -> Option<Fault> {
    let mut best: Option<Fault> = None;
    for (i, a) in accesses.iter().enumerate() {
        let pos = match target {
            FaultTarget::Offset { side, offset } => {
                (a.side == Some(side) && u64::from(offset) < a.len).then_some(u64::from(offset))
            }
            FaultTarget::Range { start, end } => {
                let lo = start.max(a.base);
                let hi = end.min(a.base.saturating_add(a.len));
                (lo < hi).then(|| if descending { hi - 1 - a.base } else { lo - a.base })
            }
        };
        let Some(pos) = pos else { continue };
        let better = best.is_none_or(|b| if descending { pos > b.pos } else { pos < b.pos });
        if better {
            best = Some(Fault { rule: 0, pos, addr: a.base.wrapping_add(pos), write: a.write, access: i });
        }
    }
    best
}
