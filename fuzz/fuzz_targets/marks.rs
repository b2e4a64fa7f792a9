//! `Marks::decode`: the high-water marks a node reads back from its state directory at start.
//! Invariants: what decodes re-encodes to no more bytes and decodes equal; no decode holds
//! more heap than the cap.
#![no_main]

use driftless_core::marks::Marks;
use driftless_fuzz::within_cap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("high-water marks", data.len(), || Marks::decode(data));
    let Ok(marks) = decoded else { return };
    let bytes = marks.encode();
    assert!(bytes.len() <= data.len(), "re-encoding marks grew them");
    let again = Marks::decode(&bytes).expect("re-encoded marks decode");
    assert_eq!(again, marks);
});
