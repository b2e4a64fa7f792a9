//! Wire messages between nodes, as versioned postcard envelopes with every size bounded.
//!
//! ```text
//! message = "DLWM" v3 Message      (v2: zone rows unsigned and pushed in full in digests;
//!                                    v1: statuses without certificates too; both still read)
//! ```
//!
//! Format 3 signs zone rows (+64 bytes each), and so that the signature does not multiply
//! with the rumor's redundancy, a digest carries the (zone, rank) of its hot rows, not the
//! rows: the receiver asks for those it lacks (`RowWant`) and gets each row about once.
//! Rows read from a format 1 or 2 message carry no signature and are never taken
//! (`unsigned_row`, not held against the sender: an honest older agent sends them); the
//! rows a format 1 or 2 digest pushed are dropped on decoding, for the same reason.
//!
//! A bundle travels inside a message as its own encoded bytes (a bundle envelope within the
//! message envelope), so the receiver decodes it with the bundle size limit and verifies it
//! before anything else.

use super::config::limits;
use super::fleet::{UnsignedZoneRow, ZoneRow};
use super::status::{SignedStatus, SignedStatusV1};
use super::PeerId;
use crate::bundle::{Bundle, BundleHash};
use crate::encoding::{self, DecodeError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

pub const MESSAGE_MAGIC: &[u8; 4] = b"DLWM";
pub const MESSAGE_FORMAT: u16 = 3;
/// The oldest format a node still writes, for a peer that reads no newer one (an agent of
/// the previous release, during an upgrade): see [`Message::encode_as`].
pub const OLDEST_WRITTEN_FORMAT: u16 = 2;

/// "I hold `version` of `channel`, with this hash; fetch it from me." `hops` counts the
/// announcements between the publisher and the sender (for measurements only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub channel: String,
    pub version: u64,
    pub hash: BundleHash,
    pub hops: u16,
}

/// One round of push-pull anti-entropy: what the sender holds, plus fleet-view news.
///
/// `S` is how a status is written: format 2 and 3 with its certificate, format 1 without.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest<S> {
    pub channels: Vec<Announcement>,
    /// (zone, rank) of the zone rows learned recently (rumors): the receiver asks for those
    /// that outrank its own, in its answering digest (`want`) or with `RowWant`.
    pub rows: Vec<(u32, u64)>,
    /// A few full statuses of failing, drifting or unhealthy nodes.
    pub notable: Vec<S>,
    /// Answer with a digest of your own (the push-pull half); false on the answer itself.
    pub reply: bool,
    /// Fingerprint of the sender's zone rows; on a mismatch the receiver asks with RowSync.
    pub rows_print: u64,
    /// On an answer: the zones whose rows, as the digest answered named them, the sender
    /// wants (answered with `RowWant` or `Rows`). Empty on a digest that asks for an answer.
    pub want: Vec<u32>,
}

/// A digest as formats 1 and 2 wrote it: hot rows in full (unsigned, so never taken).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestV2<S, R> {
    pub channels: Vec<Announcement>,
    pub rows: Vec<R>,
    /// A few full statuses of failing, drifting or unhealthy nodes.
    pub notable: Vec<S>,
    /// Answer with a digest of your own (the push-pull half); false on the answer itself.
    pub reply: bool,
    /// Fingerprint of the sender's zone rows; on a mismatch the receiver asks with RowSync.
    pub rows_print: u64,
}

/// A bundle on the wire: its bytes, decoded with the size limit on arrival.
#[derive(Debug, Clone)]
pub struct WireBundle(pub Arc<Bundle>);

impl PartialEq for WireBundle {
    fn eq(&self, other: &Self) -> bool {
        self.0.hash() == other.0.hash()
    }
}
impl Eq for WireBundle {}

impl Serialize for WireBundle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode())
    }
}

impl<'de> Deserialize<'de> for WireBundle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::de::Deserialize::deserialize(d)?;
        Bundle::decode(&bytes, crate::trust::DEFAULT_MAX_BUNDLE_BYTES)
            .map(|b| WireBundle(Arc::new(b)))
            .map_err(serde::de::Error::custom)
    }
}

/// postcard writes an enum's variant index first, as a varint: these are the indices of
/// `Message::Bundle` and `Message::Push` (a test checks them).
const BUNDLE_VARIANTS: [u32; 2] = [10, 11];

/// Whether a message body is a `Bundle` or a `Push`, from its variant index alone.
fn carries_bundle(body: &[u8]) -> bool {
    postcard::take_from_bytes::<u32>(body).is_ok_and(|(v, _)| BUNDLE_VARIANTS.contains(&v))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<P, S = Arc<SignedStatus<P>>, R = Arc<ZoneRow<P>>, D = Digest<S>> {
    // --- membership (HyParView) ---
    /// A new node asks the receiver to take it in.
    Join,
    /// The joiner, passed on a random walk until `ttl` runs out.
    ForwardJoin {
        joiner: P,
        ttl: u8,
    },
    /// Ask to enter the receiver's active view; `high` when the sender has no active peer.
    Neighbor {
        high: bool,
    },
    /// The receiver took the sender into its active view.
    NeighborAccept,
    /// Leave the receiver's active view; `alive`: keep me in your passive view.
    Disconnect {
        alive: bool,
    },
    /// A sample of the origin's views on a random walk.
    Shuffle {
        origin: P,
        peers: Vec<P>,
        ttl: u8,
    },
    ShuffleReply {
        peers: Vec<P>,
    },
    /// Keep-alive; any message counts as a sign of life.
    Ping,
    // --- dissemination ---
    /// New versions the sender holds and verified.
    Announce(Vec<Announcement>),
    /// Send me the bundle with this hash.
    Fetch(BundleHash),
    /// A bundle, in answer to a fetch.
    Bundle(WireBundle),
    /// A bundle pushed by a parent on the push tree to a peer that fetched from it before.
    Push {
        bundle: WireBundle,
        hops: u16,
    },
    /// Stop pushing bundles to me. No longer sent: the push tree is made of `Tree` adverts
    /// (a duplicate push is dropped in silence); kept so the variant indices do not move.
    Prune,
    /// A round of anti-entropy.
    Digest(D),
    // --- fleet view ---
    /// Full signed statuses (own-zone news, or answers to a zone sync).
    Statuses(Vec<S>),
    /// Zone anti-entropy: a fingerprint of the sender's zone table; on a mismatch, the entries.
    ZoneSync {
        zone: u32,
        fingerprint: u64,
        entries: Option<Vec<(P, u64)>>,
    },
    /// Send me these nodes' statuses.
    ZoneWant(Vec<P>),
    /// The (zone, issued) of every zone row I hold: send me what is newer.
    RowSync(Vec<(u32, u64)>),
    /// Zone rows, in answer to a row sync or a row want.
    Rows(Vec<R>),
    /// Send me your rows of these zones (named in your digest as outranking mine); `rows`
    /// are those you asked for in the answer to my digest (`Digest::want`), if any, so that
    /// an exchange where both sides lack rows costs two messages beyond the digests, not four.
    RowWant {
        zones: Vec<u32>,
        rows: Vec<R>,
    },
    // --- push tree (added last: the variant indices above stay as they were) ---
    /// The sender's place on the push tree (`tree.rs`): the root it reaches, its distance to
    /// it in hops, and whether the receiver is its parent; `seq` numbers the sender's adverts
    /// (one may overtake another). Sent to the active peers when it changes and to a new
    /// active peer at once.
    Tree {
        seq: u32,
        root: P,
        dist: u8,
        parent: bool,
    },
    // --- wave probes (added last) ---
    /// Send me the signed statuses of your zone's members in `wave` of `version` on
    /// `channel`: asked of a member of a zone whose row alone holds the sender's gate (a
    /// liar may forge its own zone's row, never its zone mates' statuses).
    WaveWant {
        zone: u32,
        channel: String,
        version: u64,
        wave: u8,
    },
    /// The answer: `members` of the zone's table are in the wave, `statuses` are theirs
    /// (at most `limits::MAX_STATUSES`; fewer than `members` means the list is cut short).
    WaveStatuses {
        zone: u32,
        channel: String,
        version: u64,
        wave: u8,
        members: u32,
        statuses: Vec<S>,
    },
    // --- zone size probes (added last) ---
    /// How many members does your zone's table hold? Asked of members of a zone whose row
    /// claims more members than the asker's view can square with (`Node::probe_sizes`): a
    /// liar may inflate its own zone's row, and its zone mates' tables say otherwise.
    SizeWant {
        zone: u32,
    },
    /// The answer: the sender's zone table holds `members` signed statuses.
    ZoneSize {
        zone: u32,
        members: u32,
    },
    /// As `WaveWant`, asked of a second member at the same time: send only the statuses
    /// of the wave whose node does not run `version`, and (in `WaveStatuses::members`) how
    /// many members of the wave your table holds. A first member that left out laggards
    /// (a second liar in the zone) is contradicted by their signed statuses.
    WaveDoubt {
        zone: u32,
        channel: String,
        version: u64,
        wave: u8,
    },
}

fn over(what: &'static str, len: usize, limit: usize) -> Result<(), DecodeError> {
    if len > limit {
        Err(DecodeError::TooLarge { what, len, limit })
    } else {
        Ok(())
    }
}

fn rows_within_limits<P>(rows: &[Arc<ZoneRow<P>>]) -> Result<(), DecodeError> {
    over("rows", rows.len(), limits::MAX_ROWS)?;
    for row in rows {
        over("row counts", row.counts.len(), limits::MAX_ROW_COUNTS)?;
        over(
            "row contacts",
            row.contacts.len(),
            limits::MAX_PEERS_PER_MESSAGE,
        )?;
    }
    Ok(())
}

/// A message as formats 1 and 2 wrote it.
type MessageV2<P, S> = Message<P, S, UnsignedZoneRow<P>, DigestV2<S, UnsignedZoneRow<P>>>;

impl<P: PeerId> Message<P> {
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(MESSAGE_MAGIC, MESSAGE_FORMAT, self)
    }

    /// The message as a node that reads at most message format `format` reads it, or `None`
    /// when that format has no such message (or `format` is older than
    /// [`OLDEST_WRITTEN_FORMAT`]). Format 2 has no push-tree adverts, wave or size probes or row
    /// wants: they are `None`, except a `RowWant` that carries rows, which goes as `Rows`.
    /// Rows go without their signature (format 2 read unsigned rows), and a digest without
    /// its row names and wants (format 2 pushed rows in digests; an older peer repairs its
    /// rows by `RowSync`, which both formats share).
    pub fn encode_as(&self, format: u16) -> Option<Vec<u8>> {
        match format {
            MESSAGE_FORMAT.. => Some(self.encode()),
            2 => {
                let m = downgrade(self)?;
                Some(encoding::encode(MESSAGE_MAGIC, 2, &m))
            }
            _ => None,
        }
    }

    /// The format version written in an encoded message's envelope, if it has one.
    pub fn format_of(bytes: &[u8]) -> Option<u16> {
        match bytes {
            [m0, m1, m2, m3, v0, v1, ..] if [*m0, *m1, *m2, *m3] == *MESSAGE_MAGIC => {
                Some(u16::from_le_bytes([*v0, *v1]))
            }
            _ => None,
        }
    }

    /// Decode untrusted bytes: size first, then the envelope, then every count.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let limit = limits::MAX_MESSAGE_BYTES + crate::trust::DEFAULT_MAX_BUNDLE_BYTES;
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge {
                what: "message",
                len: bytes.len(),
                limit,
            });
        }
        let (v, body) = encoding::open("message", MESSAGE_MAGIC, MESSAGE_FORMAT, bytes)?;
        // Only a bundle may be larger than a message; anything else is refused on its variant
        // alone, before a 64 MiB list of statuses or rows is decoded only to be thrown away.
        // (The variant tags are the same in formats 1, 2 and 3.)
        if bytes.len() > limits::MAX_MESSAGE_BYTES && !carries_bundle(body) {
            return Err(DecodeError::TooLarge {
                what: "message",
                len: bytes.len(),
                limit: limits::MAX_MESSAGE_BYTES,
            });
        }
        let msg: Message<P> = match v {
            1 => upgrade(encoding::body::<MessageV2<P, SignedStatusV1<P>>>(
                "message", body,
            )?),
            2 => upgrade(encoding::body::<MessageV2<P, Arc<SignedStatus<P>>>>(
                "message", body,
            )?),
            _ => encoding::body("message", body)?,
        };
        msg.check_limits()?;
        Ok(msg)
    }

    fn check_limits(&self) -> Result<(), DecodeError> {
        match self {
            Message::Shuffle { peers, .. } | Message::ShuffleReply { peers } => {
                over("peer list", peers.len(), limits::MAX_PEERS_PER_MESSAGE)
            }
            Message::Announce(a) => over("announcement list", a.len(), limits::MAX_CHANNELS),
            Message::Digest(d) => {
                over("digest channels", d.channels.len(), limits::MAX_CHANNELS)?;
                over("digest rows", d.rows.len(), limits::MAX_ROWS)?;
                over("digest want list", d.want.len(), limits::MAX_ROWS)?;
                over("digest statuses", d.notable.len(), limits::MAX_STATUSES)
            }
            Message::RowWant { zones, rows } => {
                over("row want list", zones.len(), limits::MAX_ROWS)?;
                rows_within_limits(rows)
            }
            Message::Statuses(s) => over("status list", s.len(), limits::MAX_STATUSES),
            Message::WaveStatuses { statuses, .. } => {
                over("wave status list", statuses.len(), limits::MAX_STATUSES)
            }
            Message::ZoneSync {
                entries: Some(e), ..
            } => over("zone entries", e.len(), limits::MAX_ZONE_ENTRIES),
            Message::ZoneWant(w) => over("zone want list", w.len(), limits::MAX_ZONE_ENTRIES),
            Message::RowSync(r) => over("row versions", r.len(), limits::MAX_ROWS),
            Message::Rows(r) => rows_within_limits(r),
            _ => Ok(()),
        }
    }

    /// A stable label for counting traffic by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Join => "join",
            Message::ForwardJoin { .. } => "forward_join",
            Message::Neighbor { .. } => "neighbor",
            Message::NeighborAccept => "neighbor_accept",
            Message::Disconnect { .. } => "disconnect",
            Message::Shuffle { .. } => "shuffle",
            Message::ShuffleReply { .. } => "shuffle_reply",
            Message::Ping => "ping",
            Message::Announce(_) => "announce",
            Message::Fetch(_) => "fetch",
            Message::Bundle(_) => "bundle",
            Message::Prune => "prune",
            Message::Push { .. } => "push",
            Message::Digest(_) => "digest",
            Message::Statuses(_) => "statuses",
            Message::ZoneSync { .. } => "zone_sync",
            Message::ZoneWant(_) => "zone_want",
            Message::RowSync(_) => "row_sync",
            Message::Rows(_) => "rows",
            Message::RowWant { .. } => "row_want",
            Message::Tree { .. } => "tree",
            Message::WaveWant { .. } => "wave_want",
            Message::WaveStatuses { .. } => "wave_statuses",
            Message::SizeWant { .. } => "size_want",
            Message::ZoneSize { .. } => "zone_size",
            Message::WaveDoubt { .. } => "wave_doubt",
        }
    }
}

/// The message in format 2's form (what [`Message::encode_as`] writes for format 2), or
/// `None` when format 2 has no such message.
fn downgrade<P: Clone>(m: &Message<P>) -> Option<MessageV2<P, Arc<SignedStatus<P>>>> {
    let rows = |v: &[Arc<ZoneRow<P>>]| -> Vec<UnsignedZoneRow<P>> {
        v.iter().map(|r| UnsignedZoneRow::from(&**r)).collect()
    };
    Some(match m {
        Message::Join => Message::Join,
        Message::ForwardJoin { joiner, ttl } => Message::ForwardJoin {
            joiner: joiner.clone(),
            ttl: *ttl,
        },
        Message::Neighbor { high } => Message::Neighbor { high: *high },
        Message::NeighborAccept => Message::NeighborAccept,
        Message::Disconnect { alive } => Message::Disconnect { alive: *alive },
        Message::Shuffle { origin, peers, ttl } => Message::Shuffle {
            origin: origin.clone(),
            peers: peers.clone(),
            ttl: *ttl,
        },
        Message::ShuffleReply { peers } => Message::ShuffleReply {
            peers: peers.clone(),
        },
        Message::Ping => Message::Ping,
        Message::Announce(a) => Message::Announce(a.clone()),
        Message::Fetch(h) => Message::Fetch(*h),
        Message::Bundle(b) => Message::Bundle(b.clone()),
        Message::Push { bundle, hops } => Message::Push {
            bundle: bundle.clone(),
            hops: *hops,
        },
        Message::Prune => Message::Prune,
        Message::Digest(d) => Message::Digest(DigestV2 {
            channels: d.channels.clone(),
            rows: Vec::new(),
            notable: d.notable.clone(),
            reply: d.reply,
            rows_print: d.rows_print,
        }),
        Message::Statuses(s) => Message::Statuses(s.clone()),
        Message::ZoneSync {
            zone,
            fingerprint,
            entries,
        } => Message::ZoneSync {
            zone: *zone,
            fingerprint: *fingerprint,
            entries: entries.clone(),
        },
        Message::ZoneWant(w) => Message::ZoneWant(w.clone()),
        Message::RowSync(r) => Message::RowSync(r.clone()),
        Message::Rows(r) => Message::Rows(rows(r)),
        Message::RowWant { rows: r, .. } if !r.is_empty() => Message::Rows(rows(r)),
        Message::RowWant { .. }
        | Message::Tree { .. }
        | Message::WaveWant { .. }
        | Message::WaveStatuses { .. }
        | Message::SizeWant { .. }
        | Message::ZoneSize { .. }
        | Message::WaveDoubt { .. } => return None,
    })
}

/// A format-1 or -2 message (rows unsigned; in format 1, statuses without certificates) in
/// today's form. The rows of a `Rows` message come out with an empty signature, which no
/// node takes; those a digest pushed are dropped (a format-3 digest names rows, it does not
/// carry them).
fn upgrade<P, S: Into<Arc<SignedStatus<P>>>>(m: MessageV2<P, S>) -> Message<P> {
    let statuses =
        |v: Vec<S>| -> Vec<Arc<SignedStatus<P>>> { v.into_iter().map(Into::into).collect() };
    let rows = |v: Vec<UnsignedZoneRow<P>>| -> Vec<Arc<ZoneRow<P>>> {
        v.into_iter().map(|r| Arc::new(r.into())).collect()
    };
    match m {
        Message::Join => Message::Join,
        Message::ForwardJoin { joiner, ttl } => Message::ForwardJoin { joiner, ttl },
        Message::Neighbor { high } => Message::Neighbor { high },
        Message::NeighborAccept => Message::NeighborAccept,
        Message::Disconnect { alive } => Message::Disconnect { alive },
        Message::Shuffle { origin, peers, ttl } => Message::Shuffle { origin, peers, ttl },
        Message::ShuffleReply { peers } => Message::ShuffleReply { peers },
        Message::Ping => Message::Ping,
        Message::Announce(a) => Message::Announce(a),
        Message::Fetch(h) => Message::Fetch(h),
        Message::Bundle(b) => Message::Bundle(b),
        Message::Push { bundle, hops } => Message::Push { bundle, hops },
        Message::Prune => Message::Prune,
        Message::Digest(d) => Message::Digest(Digest {
            channels: d.channels,
            rows: Vec::new(),
            notable: statuses(d.notable),
            reply: d.reply,
            rows_print: d.rows_print,
            want: Vec::new(),
        }),
        Message::Statuses(s) => Message::Statuses(statuses(s)),
        Message::ZoneSync {
            zone,
            fingerprint,
            entries,
        } => Message::ZoneSync {
            zone,
            fingerprint,
            entries,
        },
        Message::ZoneWant(w) => Message::ZoneWant(w),
        Message::RowSync(r) => Message::RowSync(r),
        Message::Rows(r) => Message::Rows(rows(r)),
        Message::RowWant { zones, rows: r } => Message::RowWant {
            zones,
            rows: rows(r),
        },
        Message::Tree {
            seq,
            root,
            dist,
            parent,
        } => Message::Tree {
            seq,
            root,
            dist,
            parent,
        },
        Message::WaveWant {
            zone,
            channel,
            version,
            wave,
        } => Message::WaveWant {
            zone,
            channel,
            version,
            wave,
        },
        Message::WaveStatuses {
            zone,
            channel,
            version,
            wave,
            members,
            statuses: s,
        } => Message::WaveStatuses {
            zone,
            channel,
            version,
            wave,
            members,
            statuses: statuses(s),
        },
        Message::SizeWant { zone } => Message::SizeWant { zone },
        Message::ZoneSize { zone, members } => Message::ZoneSize { zone, members },
        Message::WaveDoubt {
            zone,
            channel,
            version,
            wave,
        } => Message::WaveDoubt {
            zone,
            channel,
            version,
            wave,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::status::StatusBody;
    use ed25519_dalek::SigningKey;

    fn status(cert: Option<Vec<u8>>) -> SignedStatus<u32> {
        StatusBody {
            node: 7u32,
            issued_ms: 1_000,
            labels: [("role".to_string(), "web".to_string())].into(),
            channels: vec![],
            last_apply: None,
            drift_detected: 0,
            drift_corrected: 0,
            healthy: true,
            failing_checks: vec![],
        }
        .sign(&SigningKey::from_bytes(&[3; 32]))
        .with_cert(cert.map(Arc::new))
    }

    /// A zone row as format 2 wrote it.
    fn row_v2() -> UnsignedZoneRow<u32> {
        UnsignedZoneRow {
            zone: 3,
            issued_ms: 9,
            issuer: 7u32,
            members: 150,
            counts: vec![],
            contacts: vec![7],
        }
    }

    #[test]
    fn statuses_keep_their_certificate_on_the_wire() {
        let s = Arc::new(status(Some(vec![9; 200])));
        let m: Message<u32> = Message::Statuses(vec![s.clone()]);
        let back = Message::<u32>::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        let alone = SignedStatus::<u32>::decode(&s.encode()).unwrap();
        assert_eq!(alone.cert.as_deref(), Some(&vec![9; 200]));
    }

    #[test]
    fn messages_written_for_format_2_read_as_a_format_2_agent_reads_them() {
        let s = Arc::new(status(Some(vec![9; 20])));
        let unsigned = row_v2();
        let row = Arc::new(ZoneRow {
            sig: vec![1; 64],
            cert: Some(Arc::new(vec![2; 10])),
            ..ZoneRow::from(unsigned.clone())
        });
        assert_eq!(UnsignedZoneRow::from(&*row), unsigned);
        let digest: Message<u32> = Message::Digest(Digest {
            channels: vec![],
            rows: vec![(3, 77)],
            notable: vec![s.clone()],
            reply: true,
            rows_print: 5,
            want: vec![4],
        });
        let v2 = |m: &Message<u32>| -> Option<MessageV2<u32, Arc<SignedStatus<u32>>>> {
            let bytes = m.encode_as(2)?;
            assert_eq!(Message::<u32>::format_of(&bytes), Some(2));
            // What an agent of format 2 does with them: its own decoder, the V2 types.
            let (v, body) = encoding::open("message", MESSAGE_MAGIC, 2, &bytes).unwrap();
            assert_eq!(v, 2);
            Some(encoding::body("message", body).unwrap())
        };
        assert_eq!(
            v2(&digest),
            Some(Message::Digest(DigestV2 {
                channels: vec![],
                rows: vec![],
                notable: vec![s.clone()],
                reply: true,
                rows_print: 5,
            }))
        );
        assert_eq!(
            v2(&Message::Rows(vec![row.clone()])),
            Some(Message::Rows(vec![unsigned.clone()]))
        );
        assert_eq!(
            v2(&Message::RowWant {
                zones: vec![1],
                rows: vec![row.clone()]
            }),
            Some(Message::Rows(vec![unsigned]))
        );
        assert_eq!(
            v2(&Message::Statuses(vec![s.clone()])),
            Some(Message::Statuses(vec![s.clone()]))
        );
        assert_eq!(v2(&Message::Ping), Some(Message::Ping));
        // What format 2 does not know is not sent at all.
        for m in [
            Message::RowWant {
                zones: vec![1],
                rows: vec![],
            },
            Message::Tree {
                seq: 1,
                root: 2u32,
                dist: 1,
                parent: false,
            },
            Message::WaveWant {
                zone: 1,
                channel: "app".into(),
                version: 2,
                wave: 0,
            },
        ] {
            assert_eq!(m.encode_as(2), None, "{m:?}");
        }
        // Today's format is written as before; older than 2 is not written.
        assert_eq!(digest.encode_as(MESSAGE_FORMAT), Some(digest.encode()));
        assert_eq!(digest.encode_as(1), None);
        assert_eq!(Message::<u32>::format_of(b"DLWM\x02"), None);
        assert_eq!(Message::<u32>::format_of(b"DLXX\x02\x00"), None);
        // And a format-3 node reads what it wrote for format 2 (the rows without a
        // signature, so it would not take them).
        let back = Message::<u32>::decode(&Message::Rows(vec![row]).encode_as(2).unwrap());
        assert!(matches!(back, Ok(Message::Rows(r)) if r[0].sig.is_empty()));
    }

    #[test]
    fn format_1_messages_and_statuses_are_still_read() {
        let s = status(None);
        let v1 = SignedStatusV1 {
            body: s.body.clone(),
            sig: s.sig.clone(),
        };
        let old: MessageV2<u32, SignedStatusV1<u32>> = Message::Digest(DigestV2 {
            channels: vec![],
            rows: vec![],
            notable: vec![v1.clone()],
            reply: true,
            rows_print: 5,
        });
        let bytes = encoding::encode(MESSAGE_MAGIC, 1, &old);
        match Message::<u32>::decode(&bytes).unwrap() {
            Message::Digest(d) => {
                assert_eq!(d.notable.len(), 1);
                assert_eq!(*d.notable[0], s);
                assert!(d.reply && d.rows_print == 5);
            }
            other => panic!("decoded as {other:?}"),
        }
        // Format 2 rows (unsigned) are read, with an empty signature that no node takes.
        let row = row_v2();
        let old: MessageV2<u32, Arc<SignedStatus<u32>>> = Message::Rows(vec![row.clone()]);
        match Message::<u32>::decode(&encoding::encode(MESSAGE_MAGIC, 2, &old)).unwrap() {
            Message::Rows(r) => {
                assert_eq!(*r[0], ZoneRow::from(row));
                assert!(r[0].sig.is_empty());
            }
            other => panic!("decoded as {other:?}"),
        }
        let alone = encoding::encode(super::super::status::STATUS_MAGIC, 1, &v1);
        assert_eq!(SignedStatus::<u32>::decode(&alone).unwrap(), s);
        // A certificate over the cap makes the status fail its limits.
        assert!(!status(Some(vec![0; 5000])).within_limits());
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::bundle::Header;
    use crate::definition::CompiledDefinition;
    use crate::time::Timestamp;

    #[test]
    fn the_bundle_variant_indices_are_those_postcard_writes() {
        let def = CompiledDefinition {
            name: "web".into(),
            targets: Default::default(),
            vars: Default::default(),
            resources: vec![],
            checks: vec![],
            rollout: None,
        };
        let header = Header {
            fleet: "f".into(),
            channel: "web".into(),
            version: 1,
            created: Timestamp(0),
            expires: Timestamp(0),
            content_hash: [0; 32],
            rollout: None,
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let b = WireBundle(Arc::new(Bundle::sign(header, &def, &[&key])));
        for m in [
            Message::<u32>::Bundle(b.clone()),
            Message::Push { bundle: b, hops: 1 },
        ] {
            assert!(carries_bundle(&m.encode()[6..]), "{}", m.kind());
        }
        assert!(!carries_bundle(&Message::<u32>::Prune.encode()[6..]));
    }

    /// Before, a non-bundle message up to the bundle limit (64 MiB) was decoded in full and
    /// only then refused as over the message limit.
    #[test]
    fn an_oversized_message_that_is_not_a_bundle_is_refused_before_decoding() {
        let rows = Message::<u32>::RowSync(vec![(1, 1); limits::MAX_MESSAGE_BYTES / 2]);
        let mut bytes = rows.encode();
        bytes.push(0); // a trailing byte: decoding the body would call it malformed
        assert!(matches!(
            Message::<u32>::decode(&bytes),
            Err(DecodeError::TooLarge { limit, .. }) if limit == limits::MAX_MESSAGE_BYTES
        ));
    }
}
