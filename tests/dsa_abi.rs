//! The Rust DSA ABI (`ipc_offload_dsa::abi`) against the system's
//! `<linux/idxd.h>`: a C program compiled here prints the header's sizes,
//! offsets, constants and the bytes of descriptors and completion records
//! whose fields it set (the header's structs are packed bitfields); every
//! line must equal the value the Rust side computes. Without the header the
//! test is skipped outside CI and fails in CI.

use std::collections::BTreeMap;
use std::io::Write;
use std::mem::{offset_of, size_of};
use std::process::{Command, Stdio};

use ipc_offload_dsa::abi::{CompletionRecord, Descriptor, flag, opcode, status};
use ipc_offload_tests::*;

/// Whether `#include <linux/idxd.h>` compiles here.
fn have_header() -> bool {
    if !have("cc") {
        return false;
    }
    let child = Command::new("cc")
        .args(["-E", "-x", "c", "-o", "/dev/null", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let found = child.is_ok_and(|mut child| {
        let wrote = child.stdin.take().is_some_and(|mut stdin| stdin.write_all(b"#include <linux/idxd.h>\n").is_ok());
        child.wait().is_ok_and(|s| s.success()) && wrote
    });
    if !found {
        assert!(!in_ci(), "<linux/idxd.h> is missing in CI: install the kernel headers (linux-libc-dev)");
        eprintln!("SKIPPED: <linux/idxd.h> is not installed");
    }
    found
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the C program must print, computed from the Rust definitions.
fn expected() -> Vec<(&'static str, String)> {
    let mut lines: Vec<(&'static str, String)> = Vec::new();
    let mut n = |name: &'static str, value: u64| lines.push((name, value.to_string()));

    n("sizeof_dsa_hw_desc", size_of::<Descriptor>() as u64);
    n("offsetof_dsa_hw_desc_completion_addr", offset_of!(Descriptor, completion_addr) as u64);
    n("offsetof_dsa_hw_desc_src_addr", offset_of!(Descriptor, src) as u64);
    n("offsetof_dsa_hw_desc_pattern", offset_of!(Descriptor, src) as u64);
    n("offsetof_dsa_hw_desc_desc_list_addr", offset_of!(Descriptor, src) as u64);
    n("offsetof_dsa_hw_desc_dst_addr", offset_of!(Descriptor, dst) as u64);
    n("offsetof_dsa_hw_desc_src2_addr", offset_of!(Descriptor, dst) as u64);
    n("offsetof_dsa_hw_desc_xfer_size", offset_of!(Descriptor, size) as u64);
    n("offsetof_dsa_hw_desc_desc_count", offset_of!(Descriptor, size) as u64);
    n("offsetof_dsa_hw_desc_int_handle", offset_of!(Descriptor, int_handle) as u64);
    n("offsetof_dsa_hw_desc_rsvd1", offset_of!(Descriptor, rsvd) as u64);
    n("offsetof_dsa_hw_desc_op_specific", offset_of!(Descriptor, op_specific) as u64);

    n("sizeof_dsa_completion_record", size_of::<CompletionRecord>() as u64);
    n("offsetof_dsa_completion_record_status", offset_of!(CompletionRecord, status) as u64);
    n("offsetof_dsa_completion_record_result", offset_of!(CompletionRecord, result) as u64);
    n("offsetof_dsa_completion_record_rsvd", offset_of!(CompletionRecord, rsvd) as u64);
    n("offsetof_dsa_completion_record_bytes_completed", offset_of!(CompletionRecord, bytes_completed) as u64);
    n("offsetof_dsa_completion_record_fault_addr", offset_of!(CompletionRecord, fault_addr) as u64);
    n("offsetof_dsa_completion_record_op_specific", offset_of!(CompletionRecord, op_specific) as u64);

    for (name, value) in [
        ("DSA_OPCODE_NOOP", opcode::NOOP),
        ("DSA_OPCODE_BATCH", opcode::BATCH),
        ("DSA_OPCODE_DRAIN", opcode::DRAIN),
        ("DSA_OPCODE_MEMMOVE", opcode::MEMMOVE),
        ("DSA_OPCODE_MEMFILL", opcode::MEMFILL),
        ("DSA_OPCODE_COMPARE", opcode::COMPARE),
        ("DSA_OPCODE_COMPVAL", opcode::COMPVAL),
        ("DSA_OPCODE_DUALCAST", opcode::DUALCAST),
        ("DSA_OPCODE_CRCGEN", opcode::CRCGEN),
        ("DSA_OPCODE_COPY_CRC", opcode::COPY_CRC),
        ("DSA_OPCODE_CFLUSH", opcode::CFLUSH),
    ] {
        n(name, value.into());
    }
    for (name, value) in [
        ("IDXD_OP_FLAG_FENCE", flag::FENCE),
        ("IDXD_OP_FLAG_BOF", flag::BOF),
        ("IDXD_OP_FLAG_CRAV", flag::CRAV),
        ("IDXD_OP_FLAG_RCR", flag::RCR),
        ("IDXD_OP_FLAG_RCI", flag::RCI),
        ("IDXD_OP_FLAG_CRSTS", flag::CRSTS),
        ("IDXD_OP_FLAG_CR", flag::CR),
        ("IDXD_OP_FLAG_CC", flag::CC),
        ("IDXD_OP_FLAG_STORD", flag::STORD),
        ("IDXD_OP_FLAG_DRDBK", flag::DRDBK),
    ] {
        n(name, value.into());
    }
    for (name, value) in [
        ("DSA_COMP_NONE", status::NONE),
        ("DSA_COMP_SUCCESS", status::SUCCESS),
        ("DSA_COMP_SUCCESS_PRED", status::SUCCESS_PRED),
        ("DSA_COMP_PAGE_FAULT_NOBOF", status::PAGE_FAULT_NOBOF),
        ("DSA_COMP_PAGE_FAULT_IR", status::PAGE_FAULT_IR),
        ("DSA_COMP_BATCH_FAIL", status::BATCH_FAIL),
        ("DSA_COMP_BATCH_PAGE_FAULT", status::BATCH_PAGE_FAULT),
        ("DSA_COMP_BAD_OPCODE", status::BAD_OPCODE),
        ("DSA_COMP_INVALID_FLAGS", status::INVALID_FLAGS),
        ("DSA_COMP_NOZERO_RESERVE", status::NOZERO_RESERVE),
        ("DSA_COMP_XFER_ERANGE", status::XFER_ERANGE),
        ("DSA_COMP_DESC_CNT_ERANGE", status::DESC_CNT_ERANGE),
        ("DSA_COMP_OVERLAP_BUFFERS", status::OVERLAP_BUFFERS),
        ("DSA_COMP_DESCLIST_ALIGN", status::DESCLIST_ALIGN),
        ("DSA_COMP_CRA_XLAT", status::CRA_XLAT),
        ("DSA_COMP_CRA_ALIGN", status::CRA_ALIGN),
        ("DSA_COMP_ADDR_ALIGN", status::ADDR_ALIGN),
        ("DSA_COMP_TRANSLATION_FAIL", status::TRANSLATION_FAIL),
        ("DSA_COMP_STATUS_MASK", status::STATUS_MASK),
        ("DSA_COMP_STATUS_WRITE", status::WRITE_FAULT),
    ] {
        n(name, value.into());
    }

    // The bitfield words, as the C program set them.
    let none = std::ptr::null::<CompletionRecord>();
    let memmove = Descriptor::memmove(0, 0, 0, flag::CRAV | flag::RCR | flag::CC, none);
    lines.push(("desc_flags_opcode_bytes", hex(&memmove.as_bytes()[4..8])));
    // `pasid:20, rsvd:11, priv:1`: pasid in the low bits, priv in bit 31.
    let pasid = Descriptor { pasid: 0x12345 | 1 << 31, ..Descriptor::default() };
    lines.push(("desc_pasid_priv_bytes", hex(&pasid.as_bytes()[0..4])));
    let full = Descriptor {
        completion_addr: 0x1122_3344_5566_7788,
        int_handle: 0xabcd,
        op_specific: std::array::from_fn(|i| 0xe0 + i as u8),
        ..Descriptor::memmove(
            0x0102_0304_0506_0708,
            0x8877_6655_4433_2211,
            0xa0b0_c0d0,
            flag::CRAV | flag::RCR | flag::CC,
            none,
        )
    };
    lines.push(("desc_memmove_bytes", hex(full.as_bytes())));

    let record = CompletionRecord {
        status: status::PAGE_FAULT_NOBOF | status::WRITE_FAULT,
        result: 1,
        rsvd: 0,
        bytes_completed: 0x0102_0304,
        fault_addr: 0x1122_3344_5566_7788,
        op_specific: std::array::from_fn(|i| 0xf0 + i as u8),
    };
    // The record's bytes as the device reads them: each field at its offset,
    // little-endian.
    let mut bytes = vec![0u8; size_of::<CompletionRecord>()];
    let mut put = |offset: usize, field: &[u8]| bytes[offset..offset + field.len()].copy_from_slice(field);
    put(offset_of!(CompletionRecord, status), &[record.status]);
    put(offset_of!(CompletionRecord, result), &[record.result]);
    put(offset_of!(CompletionRecord, rsvd), &record.rsvd.to_le_bytes());
    put(offset_of!(CompletionRecord, bytes_completed), &record.bytes_completed.to_le_bytes());
    put(offset_of!(CompletionRecord, fault_addr), &record.fault_addr.to_le_bytes());
    put(offset_of!(CompletionRecord, op_specific), &record.op_specific);
    assert_eq!(record.code(), status::PAGE_FAULT_NOBOF);
    assert!(record.write_fault());
    lines.push(("completion_record_bytes", hex(&bytes)));
    lines
}

#[test]
fn rust_abi_matches_linux_idxd_h() {
    if !have_header() {
        return;
    }
    let out = run_plain(c_program("dsa_abi", &[]), &[]).success();
    let mut header = BTreeMap::new();
    for line in out.stdout.lines() {
        let (name, value) = line.split_once(' ').unwrap_or_else(|| panic!("malformed line {line:?}"));
        assert!(header.insert(name.to_owned(), value.to_owned()).is_none(), "{name} printed twice");
    }
    let expected = expected();
    let mut problems = Vec::new();
    for (name, value) in &expected {
        match header.get(*name) {
            None => problems.push(format!("{name}: not printed by the C program")),
            Some(c) if c != value => problems.push(format!("{name}: linux/idxd.h {c}, Rust {value}")),
            Some(_) => {}
        }
    }
    for name in header.keys() {
        if !expected.iter().any(|(n, _)| n == name) {
            problems.push(format!("{name}: printed by the C program, not checked here"));
        }
    }
    assert!(problems.is_empty(), "the Rust ABI differs from linux/idxd.h:\n{}", problems.join("\n"));
    assert_eq!(expected.len(), 64, "every line checked");
}
