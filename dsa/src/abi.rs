//! The Intel DSA user-space ABI: the 64-byte work descriptor, the 32-byte
//! completion record, opcodes, flags and status codes, with the values of
//! the kernel's `include/uapi/linux/idxd.h` (checked against the system's
//! header by `tests/dsa_abi.rs`). Plain data only: nothing here touches a
//! device.

/// Operation codes (`enum dsa_opcode`).
pub mod opcode {
    /// No operation (completes at once).
    pub const NOOP: u8 = 0x00;
    /// A list of descriptors (`desc_list_addr`, `desc_count`).
    pub const BATCH: u8 = 0x01;
    /// Waits for earlier descriptors of the queue.
    pub const DRAIN: u8 = 0x02;
    /// Copies `xfer_size` bytes, overlap-safe.
    pub const MEMMOVE: u8 = 0x03;
    /// Fills `xfer_size` bytes with an 8-byte pattern.
    pub const MEMFILL: u8 = 0x04;
    /// Compares two buffers.
    pub const COMPARE: u8 = 0x05;
    /// Compares a buffer with a pattern.
    pub const COMPVAL: u8 = 0x06;
    /// Copies to two destinations.
    pub const DUALCAST: u8 = 0x09;
    /// CRC generation.
    pub const CRCGEN: u8 = 0x10;
    /// Copy with CRC.
    pub const COPY_CRC: u8 = 0x11;
    /// Cache flush.
    pub const CFLUSH: u8 = 0x20;
}

/// Descriptor flags (`IDXD_OP_FLAG_*`), the low 24 bits of the second word.
pub mod flag {
    /// Wait for the earlier descriptors of a batch.
    pub const FENCE: u32 = 0x0001;
    /// Block on fault: the device waits for the page instead of reporting.
    pub const BOF: u32 = 0x0002;
    /// Completion record address valid.
    pub const CRAV: u32 = 0x0004;
    /// Request a completion record.
    pub const RCR: u32 = 0x0008;
    /// Request a completion interrupt.
    pub const RCI: u32 = 0x0010;
    /// Completion record steering.
    pub const CRSTS: u32 = 0x0020;
    /// Check result.
    pub const CR: u32 = 0x0080;
    /// Cache control: destination writes allocate in the last-level cache.
    pub const CC: u32 = 0x0100;
    /// Strict ordering of destination writes.
    pub const STORD: u32 = 0x2000;
    /// Destination read-back.
    pub const DRDBK: u32 = 0x4000;
}

/// Completion status codes (`enum dsa_completion_status`), compared with
/// `status & STATUS_MASK`.
pub mod status {
    /// Not yet written by the device (records are zeroed before submit).
    pub const NONE: u8 = 0x00;
    /// Done.
    pub const SUCCESS: u8 = 0x01;
    /// Done, predicate false.
    pub const SUCCESS_PRED: u8 = 0x02;
    /// A page fault without block-on-fault: partial completion.
    pub const PAGE_FAULT_NOBOF: u8 = 0x03;
    /// A page fault with an interrupt handle.
    pub const PAGE_FAULT_IR: u8 = 0x04;
    /// A descriptor of the batch failed.
    pub const BATCH_FAIL: u8 = 0x05;
    /// A page fault reading the batch's descriptor list.
    pub const BATCH_PAGE_FAULT: u8 = 0x06;
    /// First error code; every status from here on is an error.
    pub const BAD_OPCODE: u8 = 0x10;
    /// Flags the device does not accept.
    pub const INVALID_FLAGS: u8 = 0x11;
    /// A reserved field is not zero.
    pub const NOZERO_RESERVE: u8 = 0x12;
    /// `xfer_size` above the queue's maximum, or zero.
    pub const XFER_ERANGE: u8 = 0x13;
    /// `desc_count` out of range.
    pub const DESC_CNT_ERANGE: u8 = 0x14;
    /// Overlapping buffers where the operation forbids them.
    pub const OVERLAP_BUFFERS: u8 = 0x16;
    /// The batch's descriptor list is misaligned.
    pub const DESCLIST_ALIGN: u8 = 0x18;
    /// The completion record address does not translate.
    pub const CRA_XLAT: u8 = 0x1a;
    /// The completion record is misaligned.
    pub const CRA_ALIGN: u8 = 0x1b;
    /// An address is misaligned.
    pub const ADDR_ALIGN: u8 = 0x1c;
    /// An address does not translate.
    pub const TRANSLATION_FAIL: u8 = 0x22;
    /// The status bits of the first byte.
    pub const STATUS_MASK: u8 = 0x7f;
    /// Set with a page fault status: the faulting access was a write.
    pub const WRITE_FAULT: u8 = 0x80;
}

/// The device's `gen_cap` bit for cache control (the `CC` flag).
pub const GEN_CAP_CACHE_CONTROL: u64 = 1 << 2;

/// A work descriptor (`struct dsa_hw_desc`): 64 bytes, submitted whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Descriptor {
    /// `pasid:20, rsvd:11, priv:1` (zero: the kernel fills the PASID for
    /// user queues).
    pub pasid: u32,
    /// `flags:24, opcode:8`.
    pub flags_opcode: u32,
    /// Where the device writes the completion record (32-byte aligned).
    pub completion_addr: u64,
    /// Source, fill pattern, or batch descriptor list.
    pub src: u64,
    /// Destination, or the second source of COMPARE.
    pub dst: u64,
    /// Bytes, or the batch's descriptor count.
    pub size: u32,
    /// Interrupt handle (unused: completion records only).
    pub int_handle: u16,
    /// Reserved, zero.
    pub rsvd: u16,
    /// Operation-specific bytes (zero for the operations used here).
    pub op_specific: [u8; 24],
}

impl Descriptor {
    fn new(opcode: u8, flags: u32, completion: *const CompletionRecord) -> Descriptor {
        Descriptor {
            flags_opcode: (flags & 0x00ff_ffff) | (u32::from(opcode) << 24),
            completion_addr: completion as u64,
            ..Descriptor::default()
        }
    }

    /// MEMMOVE `len` bytes from `src` to `dst`.
    pub fn memmove(src: u64, dst: u64, len: u32, flags: u32, completion: *const CompletionRecord) -> Descriptor {
        Descriptor { src, dst, size: len, ..Descriptor::new(opcode::MEMMOVE, flags, completion) }
    }

    /// MEMFILL `len` bytes at `dst` with the 8-byte `pattern`.
    pub fn memfill(pattern: u64, dst: u64, len: u32, flags: u32, completion: *const CompletionRecord) -> Descriptor {
        Descriptor { src: pattern, dst, size: len, ..Descriptor::new(opcode::MEMFILL, flags, completion) }
    }

    /// COMPARE `len` bytes of `a` and `b`.
    pub fn compare(a: u64, b: u64, len: u32, flags: u32, completion: *const CompletionRecord) -> Descriptor {
        Descriptor { src: a, dst: b, size: len, ..Descriptor::new(opcode::COMPARE, flags, completion) }
    }

    /// BATCH of `count` descriptors at `list` (64-byte aligned).
    pub fn batch(list: *const Descriptor, count: u32, flags: u32, completion: *const CompletionRecord) -> Descriptor {
        Descriptor { src: list as u64, size: count, ..Descriptor::new(opcode::BATCH, flags, completion) }
    }

    /// NOOP.
    pub fn noop(flags: u32, completion: *const CompletionRecord) -> Descriptor {
        Descriptor::new(opcode::NOOP, flags, completion)
    }

    /// The operation code.
    pub fn opcode(&self) -> u8 {
        (self.flags_opcode >> 24) as u8
    }

    /// The flags.
    pub fn flags(&self) -> u32 {
        self.flags_opcode & 0x00ff_ffff
    }

    /// The descriptor as the 64 bytes the device reads.
    pub fn as_bytes(&self) -> &[u8; 64] {
        // SAFETY: repr(C), 64 bytes, no padding (fields fill it exactly:
        // 4 + 4 + 8 + 8 + 8 + 4 + 2 + 2 + 24), every byte initialised.
        unsafe { &*(self as *const Descriptor).cast::<[u8; 64]>() }
    }
}

/// A completion record (`struct dsa_completion_record`): 32 bytes, 32-byte
/// aligned, zeroed before its descriptor is submitted; the device writes
/// `status` last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct CompletionRecord {
    /// [`status`] code; bit 7 flags a write fault.
    pub status: u8,
    /// Operation result: for MEMMOVE, 1 when the device copied descending
    /// (the remainder of a partial copy is then at the front); for COMPARE,
    /// 1 when the buffers differ.
    pub result: u8,
    /// Reserved.
    pub rsvd: u16,
    /// Bytes done before a fault; for COMPARE, the first differing offset.
    pub bytes_completed: u32,
    /// The faulting address.
    pub fault_addr: u64,
    /// Operation-specific (invalid flags, CRC value...).
    pub op_specific: [u8; 16],
}

impl CompletionRecord {
    /// All zero: not yet written.
    pub const ZERO: CompletionRecord =
        CompletionRecord { status: 0, result: 0, rsvd: 0, bytes_completed: 0, fault_addr: 0, op_specific: [0; 16] };

    /// The status code without the write-fault bit.
    pub fn code(&self) -> u8 {
        self.status & status::STATUS_MASK
    }

    /// True when a page fault status says the access was a write.
    pub fn write_fault(&self) -> bool {
        self.status & status::WRITE_FAULT != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_hardware_ones() {
        assert_eq!((size_of::<Descriptor>(), align_of::<Descriptor>()), (64, 64));
        assert_eq!((size_of::<CompletionRecord>(), align_of::<CompletionRecord>()), (32, 32));
        assert_eq!(core::mem::offset_of!(Descriptor, completion_addr), 8);
        assert_eq!(core::mem::offset_of!(Descriptor, src), 16);
        assert_eq!(core::mem::offset_of!(Descriptor, dst), 24);
        assert_eq!(core::mem::offset_of!(Descriptor, size), 32);
        assert_eq!(core::mem::offset_of!(Descriptor, op_specific), 40);
        assert_eq!(core::mem::offset_of!(CompletionRecord, bytes_completed), 4);
        assert_eq!(core::mem::offset_of!(CompletionRecord, fault_addr), 8);
    }

    #[test]
    fn opcode_and_flags_share_a_word() {
        let cr = CompletionRecord::default();
        let d = Descriptor::memmove(0x1000, 0x2000, 4096, flag::CRAV | flag::RCR | flag::CC, &cr);
        assert_eq!(d.opcode(), opcode::MEMMOVE);
        assert_eq!(d.flags(), 0x10c);
        assert_eq!(d.flags_opcode, 0x0300_010c);
        assert_eq!(&d.as_bytes()[4..8], &[0x0c, 0x01, 0x00, 0x03]);
        assert_eq!(d.completion_addr, &cr as *const _ as u64);
        let b = Descriptor::batch(core::ptr::null(), 3, 0, &cr);
        assert_eq!((b.opcode(), b.size), (opcode::BATCH, 3));
    }

    #[test]
    fn status_codes_mask_the_write_bit() {
        let cr = CompletionRecord { status: status::PAGE_FAULT_NOBOF | status::WRITE_FAULT, ..Default::default() };
        assert_eq!(cr.code(), status::PAGE_FAULT_NOBOF);
        assert!(cr.write_fault());
    }
}
