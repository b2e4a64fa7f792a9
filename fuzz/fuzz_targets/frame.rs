//! The agent's transport frames (`Request`, `Response` in src/agent/transport.rs): the first
//! bytes any peer that completed the Noise handshake can make a node decode, then the core
//! messages and bundles inside them, decoded as the agent does.
//! Invariants: what decodes re-encodes to no more bytes and to the same encoding; a frame is
//! bytes around bytes, so decoding one holds at most about three times its size (a frame may
//! be 65 MiB; the generic cap of the other targets would allow gigabytes).
#![no_main]

use driftless::agent::peer::AgentPeer;
use driftless::agent::transport::{Request, Response};
use driftless_core::bundle::Bundle;
use driftless_core::proto::Message;
use driftless_fuzz::samples::BUNDLE_CAP;
use driftless_fuzz::within;
use libfuzzer_sys::fuzz_target;

fn inner_message(bytes: &[u8]) {
    if let Ok(m) = Message::<AgentPeer>::decode(bytes) {
        let again =
            Message::<AgentPeer>::decode(&m.encode()).expect("a re-encoded message decodes");
        assert_eq!(again.encode(), m.encode());
    }
}

/// Heap a frame of `len` bytes may hold while it is decoded.
fn frame_cap(len: usize) -> usize {
    3 * len + 4096
}

fuzz_target!(|data: &[u8]| {
    let cap = frame_cap(data.len());
    if let Ok(req) = within("request frame", data.len(), cap, || Request::decode(data)) {
        let bytes = req.encode();
        assert!(bytes.len() <= data.len(), "re-encoding a request grew it");
        let again = Request::decode(&bytes).expect("a re-encoded request decodes");
        assert_eq!(again.encode(), bytes);
        match req {
            Request::Core { msg, .. } => inner_message(&msg),
            Request::Publish(b) => {
                let _ = Bundle::decode(&b, BUNDLE_CAP);
            }
        }
    }
    if let Ok(resp) = within("response frame", data.len(), cap, || Response::decode(data)) {
        let bytes = resp.encode();
        assert!(bytes.len() <= data.len(), "re-encoding a response grew it");
        let again = Response::decode(&bytes).expect("a re-encoded response decodes");
        assert_eq!(again.encode(), bytes);
        if let Response::Core(msgs) = resp {
            msgs.iter().for_each(|m| inner_message(m));
        }
    }
});
