//! High-water marks: the highest version accepted per channel, so nothing rolls back.
//!
//! A mark is raised when a bundle is *accepted* (verified and stored), whether or not it was
//! applied. The same version again is accepted only with the very same signed content (same
//! bundle hash; cosignatures do not change it): that is a re-apply. Anything else at or below
//! the mark is refused.

use crate::bundle::{BundleHash, Header};
use crate::encoding::{self, DecodeError};
use crate::trust::Refusal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MARKS_MAGIC: &[u8; 4] = b"DLMK";
pub const MARKS_FORMAT: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub version: u64,
    pub hash: BundleHash,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    pub channels: BTreeMap<String, Mark>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkDecision {
    /// Above the mark: accept and raise the mark.
    New,
    /// The very bundle already accepted: a re-apply.
    Same,
}

impl Marks {
    pub fn decide(&self, header: &Header, hash: BundleHash) -> Result<MarkDecision, Refusal> {
        match self.channels.get(&header.channel) {
            None => Ok(MarkDecision::New),
            Some(mark) if header.version > mark.version => Ok(MarkDecision::New),
            Some(mark) if header.version == mark.version && hash == mark.hash => {
                Ok(MarkDecision::Same)
            }
            Some(mark) if header.version == mark.version => Err(Refusal::ConflictingContent {
                channel: header.channel.clone(),
                version: header.version,
            }),
            Some(mark) => Err(Refusal::RolledBack {
                channel: header.channel.clone(),
                version: header.version,
                mark: mark.version,
            }),
        }
    }

    /// Raise the mark of the header's channel (never lowers it).
    pub fn record(&mut self, header: &Header, hash: BundleHash) {
        let entry = self.channels.entry(header.channel.clone()).or_insert(Mark {
            version: header.version,
            hash,
        });
        if header.version >= entry.version {
            *entry = Mark {
                version: header.version,
                hash,
            };
        }
    }

    pub fn get(&self, channel: &str) -> Option<Mark> {
        self.channels.get(channel).copied()
    }

    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(MARKS_MAGIC, MARKS_FORMAT, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Marks, DecodeError> {
        let (_v, body) = encoding::open("high-water marks", MARKS_MAGIC, MARKS_FORMAT, bytes)?;
        encoding::body("high-water marks", body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use proptest::prelude::*;

    fn h(version: u64) -> Header {
        Header {
            fleet: "f".into(),
            channel: "web".into(),
            version,
            created: Timestamp(0),
            expires: Timestamp(0),
            content_hash: [0; 32],
            rollout: None,
        }
    }

    #[test]
    fn rollback_and_conflicts_are_refused() {
        let mut m = Marks::default();
        let a = BundleHash([1; 32]);
        let b = BundleHash([2; 32]);
        assert_eq!(m.decide(&h(5), a), Ok(MarkDecision::New));
        m.record(&h(5), a);
        assert_eq!(m.decide(&h(5), a), Ok(MarkDecision::Same));
        assert_eq!(
            m.decide(&h(5), b).unwrap_err().reason(),
            "conflicting_content"
        );
        assert_eq!(m.decide(&h(4), a).unwrap_err().reason(), "rolled_back");
        assert_eq!(m.decide(&h(6), b), Ok(MarkDecision::New));
        let back = Marks::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
    }

    proptest! {
        #[test]
        fn the_mark_never_goes_down(versions in proptest::collection::vec(0u64..50, 1..40)) {
            let mut m = Marks::default();
            let mut highest = 0;
            for v in versions {
                m.record(&h(v), BundleHash([v as u8; 32]));
                highest = highest.max(v);
                prop_assert_eq!(m.get("web").unwrap().version, highest);
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Marks::decode(&bytes);
            let _ = crate::bundle::Bundle::decode(&bytes, 1 << 20);
        }
    }
}
