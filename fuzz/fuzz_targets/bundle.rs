//! `Bundle::decode`: bytes from a peer (`Fetch` answers, pushes), a `publish` client or a file.
//! Invariants: the size cap refuses before anything else; what decodes re-encodes to no more
//! bytes, with the same hash, header and signatures; no decode holds more heap than the cap.
#![no_main]

use driftless_core::bundle::{Bundle, MAX_SIGNATURES};
use driftless_core::encoding::DecodeError;
use driftless_fuzz::samples::BUNDLE_CAP;
use driftless_fuzz::within_cap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("bundle", data.len(), || Bundle::decode(data, BUNDLE_CAP));
    if !data.is_empty() {
        assert!(
            matches!(
                Bundle::decode(data, data.len() - 1),
                Err(DecodeError::TooLarge { .. })
            ),
            "a bundle over the cap must be refused as too large"
        );
    }
    let Ok(bundle) = decoded else { return };
    assert!(bundle.signatures().len() <= MAX_SIGNATURES);
    let bytes = bundle.encode();
    assert!(bytes.len() <= data.len(), "re-encoding a bundle grew it");
    let again = Bundle::decode(&bytes, BUNDLE_CAP).expect("a re-encoded bundle decodes");
    assert_eq!(again.hash(), bundle.hash());
    assert_eq!(again.signatures(), bundle.signatures());
    // Debug, not ==: a rollout policy holds floats, and NaN != NaN.
    assert_eq!(
        format!("{:?}", again.header()),
        format!("{:?}", bundle.header())
    );
    assert_eq!(again.encode(), bytes);
    // `plan` decodes the definition of a bundle nobody verified.
    let _ = within_cap("unverified definition", data.len(), || {
        bundle.definition_unverified()
    });
});
