//! The side-channel datagram decoder (runtime/src/ipc/side.rs), fed any
//! bytes a hostile process of the same uid could send: it must never panic,
//! accept only well-formed messages of this version, and what it accepts
//! must encode back to a datagram of the same length that decodes to the
//! same message. The abstract name of any endpoint fits its buffer and
//! carries the version.
#![no_main]

use ipc_offload_runtime::ipc::endpoint::{Endpoint, Family};
use ipc_offload_runtime::ipc::side::{MAGIC, MAX_LEN, Message, VERSION, reader_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(message) = Message::decode(data) {
        assert!(data.len() <= MAX_LEN);
        assert_eq!(data[..4], MAGIC);
        assert_eq!(data[4], VERSION);
        let (bytes, len) = message.encode();
        assert_eq!(len, data.len(), "{message:?}");
        assert_eq!(Message::decode(&bytes[..len]), Some(message));
        // What the message carries is exactly the input's fields.
        assert_eq!(bytes[..6], data[..6]);
        assert_eq!(bytes[8..len], data[8..len]);
    }
    if data.len() >= 17 {
        let dev = u64::from_le_bytes(data[1..9].try_into().unwrap());
        let ino = u64::from_le_bytes(data[9..17].try_into().unwrap());
        let family = if data[0] & 1 == 0 { Family::Unix } else { Family::Pipe };
        let name = reader_name(Endpoint { family, dev, ino });
        let prefix = format!("ipc-offload/{VERSION}/");
        assert!(name.name().starts_with(prefix.as_bytes()));
    }
});
