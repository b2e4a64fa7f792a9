//! `CompiledDefinition::decode`: the definition inside a bundle, decoded after the signatures
//! are checked, and by `plan` from bundle files nobody verified.
//! Invariants: what decodes re-encodes to no more bytes and decodes to the same encoding; no
//! decode holds more heap than the cap.
#![no_main]

use driftless_core::definition::CompiledDefinition;
use driftless_fuzz::within_cap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("definition", data.len(), || {
        CompiledDefinition::decode(data)
    });
    let Ok(def) = decoded else { return };
    let bytes = def.encode();
    assert!(
        bytes.len() <= data.len(),
        "re-encoding a definition grew it"
    );
    let again = CompiledDefinition::decode(&bytes).expect("a re-encoded definition decodes");
    // Encodings, not ==: variables may hold NaN.
    assert_eq!(again.encode(), bytes);
});
