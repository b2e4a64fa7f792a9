//! `TrustRoot::verify_bytes` (size cap, decode, signatures) and, with a checker that accepts
//! every signature, what `verify` checks after them (content hash, definition, channel).
//! Invariants: whatever verifies is for this fleet, unexpired, signed by enough distinct
//! trusted keys, and carries the definition its header names.
#![no_main]

use driftless_core::bundle::{Bundle, VerifiedBundle};
use driftless_core::trust::TrustRoot;
use driftless_fuzz::samples::{trust_root, NOW};
use driftless_fuzz::{within_cap, AcceptAll};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static ROOT: OnceLock<TrustRoot> = OnceLock::new();

fn check(root: &TrustRoot, v: &VerifiedBundle) {
    let h = v.header();
    assert_eq!(h.fleet, root.fleet);
    assert!(h.expires.plus(root.clock_skew_secs) >= NOW);
    assert_eq!(v.definition().name, h.channel);
    assert!(v.signers().len() >= root.threshold.max(1));
    for (i, s) in v.signers().iter().enumerate() {
        assert!(root.release_keys.iter().any(|k| k.as_bytes() == s));
        assert!(!v.signers()[..i].contains(s), "a signer counted twice");
    }
}

fuzz_target!(|data: &[u8]| {
    let root = ROOT.get_or_init(trust_root);
    let real = within_cap("verified bundle", data.len(), || {
        root.verify_bytes(data, NOW)
    });
    if let Ok(v) = &real {
        check(root, v);
    }
    let Ok(bundle) = Bundle::decode(data, root.max_bundle_bytes) else {
        assert!(real.is_err());
        return;
    };
    let lax = within_cap("verified bundle", data.len(), || {
        root.verify(bundle, NOW, &AcceptAll)
    });
    match (&real, &lax) {
        (Ok(a), Ok(b)) => assert_eq!(a.hash(), b.hash()),
        (Ok(_), Err(e)) => panic!("verified with real signatures but refused without: {e}"),
        (Err(_), Ok(v)) => check(root, v),
        (Err(_), Err(_)) => {}
    }
});
