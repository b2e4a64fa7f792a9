//! `Message::decode` for every wire message (membership, announcements, bundles, digests,
//! statuses, zone rows), with the agent's peer-id layout.
//! Invariants: only a bundle may exceed the message size cap; every count limit holds; what
//! decodes re-encodes (in the current format) to no more bytes and decodes to an equal message,
//! and written as format 2 (for an older agent) decodes to the same kind; no decode holds more
//! heap than the cap.
#![no_main]

use driftless_core::proto::config::limits::*;
use driftless_core::proto::message::MESSAGE_FORMAT;
use driftless_core::proto::{Message, ZoneRow};
use driftless_fuzz::{within_cap, WirePeer};
use libfuzzer_sys::fuzz_target;

/// The documented limits, restated from the public fields (the decoder checks them itself).
fn within_limits(msg: &Message<WirePeer>) -> bool {
    match msg {
        Message::Shuffle { peers, .. } | Message::ShuffleReply { peers } => {
            peers.len() <= MAX_PEERS_PER_MESSAGE
        }
        Message::Announce(a) => a.len() <= MAX_CHANNELS,
        Message::Digest(d) => {
            d.channels.len() <= MAX_CHANNELS
                && d.rows.len() <= MAX_ROWS
                && d.want.len() <= MAX_ROWS
                && d.notable.len() <= MAX_STATUSES
        }
        Message::RowWant { zones, rows } => zones.len() <= MAX_ROWS && rows_within(rows),
        Message::Statuses(s) => s.len() <= MAX_STATUSES,
        Message::ZoneSync {
            entries: Some(e), ..
        } => e.len() <= MAX_ZONE_ENTRIES,
        Message::ZoneWant(w) => w.len() <= MAX_ZONE_ENTRIES,
        Message::RowSync(r) => r.len() <= MAX_ROWS,
        Message::Rows(r) => rows_within(r),
        _ => true,
    }
}

fn rows_within(r: &[std::sync::Arc<ZoneRow<WirePeer>>]) -> bool {
    r.len() <= MAX_ROWS
        && r.iter().all(|row| {
            row.counts.len() <= MAX_ROW_COUNTS && row.contacts.len() <= MAX_PEERS_PER_MESSAGE
        })
}

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("message", data.len(), || Message::<WirePeer>::decode(data));
    let Ok(msg) = decoded else { return };
    if !matches!(msg, Message::Bundle(_) | Message::Push { .. }) {
        assert!(data.len() <= MAX_MESSAGE_BYTES);
    }
    assert!(
        within_limits(&msg),
        "a {} message over a limit decoded",
        msg.kind()
    );
    let bytes = msg.encode();
    // A format-1 or -2 message comes back as format 3: one byte longer per status of format
    // 1 (its certificate field) and per row of a `Rows` message (its empty signature); only
    // a current-format input must not grow.
    if data[4..6] == MESSAGE_FORMAT.to_le_bytes() {
        assert!(
            bytes.len() <= data.len(),
            "re-encoding a {} grew it",
            msg.kind()
        );
    }
    let again = Message::<WirePeer>::decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(again, msg);
    assert_eq!(again.encode(), bytes);
    // What a node writes for an agent of the previous release (format 2) decodes too, as
    // the same kind or, for a row want, as the rows it carries.
    if let Some(old) = msg.encode_as(2) {
        let back = Message::<WirePeer>::decode(&old).expect("a message written as format 2 decodes");
        assert!(
            back.kind() == msg.kind() || (msg.kind() == "row_want" && back.kind() == "rows"),
            "a {} written as format 2 came back as a {}",
            msg.kind(),
            back.kind()
        );
    }
});
