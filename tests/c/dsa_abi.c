/*
 * Prints the layout and constants of the system's <linux/idxd.h>, one
 * "NAME VALUE" per line (numbers in decimal, byte strings in hex), for
 * tests/dsa_abi.rs to compare with ipc_offload_engine::dsa::abi.
 *
 * The header's structs are packed and use bitfields, so the positions of
 * pasid/priv and flags/opcode are shown as the bytes of descriptors whose
 * fields were set one by one.
 *
 * usage: dsa_abi
 */
#include <linux/idxd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define VALUE(name) printf("%s %llu\n", #name, (unsigned long long)(name))
#define SIZE(type) printf("sizeof_%s %zu\n", #type, sizeof(struct type))
#define OFFSET(type, field) printf("offsetof_%s_%s %zu\n", #type, #field, offsetof(struct type, field))

static void bytes(const char *name, const void *p, size_t n) {
    const uint8_t *b = p;
    printf("%s ", name);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

int main(void) {
    SIZE(dsa_hw_desc);
    OFFSET(dsa_hw_desc, completion_addr);
    OFFSET(dsa_hw_desc, src_addr);
    OFFSET(dsa_hw_desc, pattern);
    OFFSET(dsa_hw_desc, desc_list_addr);
    OFFSET(dsa_hw_desc, dst_addr);
    OFFSET(dsa_hw_desc, src2_addr);
    OFFSET(dsa_hw_desc, xfer_size);
    OFFSET(dsa_hw_desc, desc_count);
    OFFSET(dsa_hw_desc, int_handle);
    OFFSET(dsa_hw_desc, rsvd1);
    OFFSET(dsa_hw_desc, op_specific);

    SIZE(dsa_completion_record);
    OFFSET(dsa_completion_record, status);
    OFFSET(dsa_completion_record, result);
    OFFSET(dsa_completion_record, rsvd);
    OFFSET(dsa_completion_record, bytes_completed);
    OFFSET(dsa_completion_record, fault_addr);
    OFFSET(dsa_completion_record, op_specific);

    /* The second word with opcode MEMMOVE and flags CRAV|RCR|CC. */
    struct dsa_hw_desc d;
    memset(&d, 0, sizeof d);
    d.opcode = 0x03;
    d.flags = 0x10c;
    bytes("desc_flags_opcode_bytes", (const uint8_t *)&d + 4, 4);

    /* The first word with pasid 0x12345 and priv set. */
    memset(&d, 0, sizeof d);
    d.pasid = 0x12345;
    d.priv = 1;
    bytes("desc_pasid_priv_bytes", &d, 4);

    /* Every field set: the whole 64 bytes. */
    memset(&d, 0, sizeof d);
    d.opcode = DSA_OPCODE_MEMMOVE;
    d.flags = IDXD_OP_FLAG_CRAV | IDXD_OP_FLAG_RCR | IDXD_OP_FLAG_CC;
    d.completion_addr = 0x1122334455667788ull;
    d.src_addr = 0x0102030405060708ull;
    d.dst_addr = 0x8877665544332211ull;
    d.xfer_size = 0xa0b0c0d0u;
    d.int_handle = 0xabcd;
    for (int i = 0; i < 24; i++) d.op_specific[i] = (uint8_t)(0xe0 + i);
    bytes("desc_memmove_bytes", &d, sizeof d);

    /* A completion record with every field set. */
    struct dsa_completion_record c;
    memset(&c, 0, sizeof c);
    c.status = DSA_COMP_PAGE_FAULT_NOBOF | DSA_COMP_STATUS_WRITE;
    c.result = 1;
    c.bytes_completed = 0x01020304u;
    c.fault_addr = 0x1122334455667788ull;
    for (int i = 0; i < 16; i++) c.op_specific[i] = (uint8_t)(0xf0 + i);
    bytes("completion_record_bytes", &c, sizeof c);

    VALUE(DSA_OPCODE_NOOP);
    VALUE(DSA_OPCODE_BATCH);
    VALUE(DSA_OPCODE_DRAIN);
    VALUE(DSA_OPCODE_MEMMOVE);
    VALUE(DSA_OPCODE_MEMFILL);
    VALUE(DSA_OPCODE_COMPARE);
    VALUE(DSA_OPCODE_COMPVAL);
    VALUE(DSA_OPCODE_DUALCAST);
    VALUE(DSA_OPCODE_CRCGEN);
    VALUE(DSA_OPCODE_COPY_CRC);
    VALUE(DSA_OPCODE_CFLUSH);

    VALUE(IDXD_OP_FLAG_FENCE);
    VALUE(IDXD_OP_FLAG_BOF);
    VALUE(IDXD_OP_FLAG_CRAV);
    VALUE(IDXD_OP_FLAG_RCR);
    VALUE(IDXD_OP_FLAG_RCI);
    VALUE(IDXD_OP_FLAG_CRSTS);
    VALUE(IDXD_OP_FLAG_CR);
    VALUE(IDXD_OP_FLAG_CC);
    VALUE(IDXD_OP_FLAG_STORD);
    VALUE(IDXD_OP_FLAG_DRDBK);

    VALUE(DSA_COMP_NONE);
    VALUE(DSA_COMP_SUCCESS);
    VALUE(DSA_COMP_SUCCESS_PRED);
    VALUE(DSA_COMP_PAGE_FAULT_NOBOF);
    VALUE(DSA_COMP_PAGE_FAULT_IR);
    VALUE(DSA_COMP_BATCH_FAIL);
    VALUE(DSA_COMP_BATCH_PAGE_FAULT);
    VALUE(DSA_COMP_BAD_OPCODE);
    VALUE(DSA_COMP_INVALID_FLAGS);
    VALUE(DSA_COMP_NOZERO_RESERVE);
    VALUE(DSA_COMP_XFER_ERANGE);
    VALUE(DSA_COMP_DESC_CNT_ERANGE);
    VALUE(DSA_COMP_OVERLAP_BUFFERS);
    VALUE(DSA_COMP_DESCLIST_ALIGN);
    VALUE(DSA_COMP_CRA_XLAT);
    VALUE(DSA_COMP_CRA_ALIGN);
    VALUE(DSA_COMP_ADDR_ALIGN);
    VALUE(DSA_COMP_TRANSLATION_FAIL);
    VALUE(DSA_COMP_STATUS_MASK);
    VALUE(DSA_COMP_STATUS_WRITE);
    return 0;
}
