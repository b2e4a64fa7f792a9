//! `SignedStatus::decode`: a node's persisted status file (the same structure arrives inside
//! `Statuses` and `Digest` messages, fuzzed by the `message` target), then `verify` against the
//! key the status names.
//! Invariants: the size cap holds; what decodes re-encodes to no more bytes and decodes equal;
//! a status that verifies has a 64-byte signature and is within the item limits.
#![no_main]

use driftless_core::proto::config::limits::MAX_MESSAGE_BYTES;
use driftless_core::proto::status::SIGNED_STATUS_FORMAT;
use driftless_core::proto::SignedStatus;
use driftless_core::trust::Ed25519Check;
use driftless_fuzz::{within_cap, WirePeer};
use ed25519_dalek::VerifyingKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("status", data.len(), || {
        SignedStatus::<WirePeer>::decode(data)
    });
    let Ok(status) = decoded else { return };
    assert!(data.len() <= MAX_MESSAGE_BYTES);
    let bytes = status.encode();
    // A format-1 status comes back as format 2, one byte longer (its certificate field).
    if data[4..6] == SIGNED_STATUS_FORMAT.to_le_bytes() {
        assert!(bytes.len() <= data.len(), "re-encoding a status grew it");
    }
    let again = SignedStatus::<WirePeer>::decode(&bytes).expect("a re-encoded status decodes");
    assert_eq!(again, status);
    assert_eq!(again.encode(), bytes);
    if let Ok(key) = VerifyingKey::from_bytes(&status.body.node.key) {
        if status.verify(&key, &Ed25519Check) {
            assert_eq!(status.sig.len(), 64);
            assert!(status.within_limits());
        }
    }
});
