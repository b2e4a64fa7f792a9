//! `SignedRoot::decode`: a new trust root as a peer pushes it or `publish` hands it over (the
//! agent takes it on with `TrustRoot::verify_next_root`).
//! Invariants: the size cap holds; what decodes re-encodes to no more bytes and decodes equal;
//! verification never panics, and a root taken on is the next version of this fleet.
#![no_main]

use driftless_core::root::{SignedRoot, MAX_ROOT_BYTES};
use driftless_fuzz::{samples, within_cap, AcceptAll};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("signed root", data.len(), || SignedRoot::decode(data));
    let Ok(root) = decoded else { return };
    assert!(data.len() <= MAX_ROOT_BYTES);
    let bytes = root.encode();
    assert!(bytes.len() <= data.len(), "re-encoding a root grew it");
    let again = SignedRoot::decode(&bytes).expect("a re-encoded root decodes");
    assert_eq!(again, root);
    let current = samples::admitted_root();
    if let Ok(next) = current.verify_next_root(&root, samples::NOW, &AcceptAll) {
        assert_eq!(next.fleet, current.fleet);
        assert_eq!(next.version, current.version + 1);
    }
});
