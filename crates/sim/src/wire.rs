//! Bytes on the wire, counted without building them: postcard's size flavour, with the size
//! of each zone row remembered (a `Rows` message carries up to `rows_per_message` rows, the
//! same few thousand distinct rows over and over), and likewise of each status and bundle
//! (every status crosses its zone a few hundred times, every bundle the fleet; a bundle's
//! size was an encoding of its 16 KB into a fresh buffer per copy sent).

use driftless_core::bundle::Bundle;
use driftless_core::proto::{Message, SignedStatus, ZoneRow};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub struct WireSize {
    /// (zone, issued, issuer, signature length) → encoded bytes. A leader issues one row per
    /// zone per instant (a liar's forgeries may differ in their signature alone).
    rows: HashMap<(u32, u64, u32, usize), usize, FastHash>,
    /// Status → encoded bytes, per shared value: a status crosses the virtual network as one
    /// `Arc`, kept here so that its address is never reused for other bytes.
    statuses: HashMap<usize, (Arc<SignedStatus<u32>>, usize), FastHash>,
    /// Bundle → encoded bytes (the bytes inside a `WireBundle`), per shared value likewise.
    bundles: HashMap<usize, (Arc<Bundle>, usize), FastHash>,
}

/// A multiply-rotate hasher (FxHash's) for the simulator's own maps of small integer keys,
/// looked up once per row or status carried (SipHash was ~7% of a 100k run). Not for
/// anything an attacker chooses: there is none in a simulation.
#[derive(Default, Clone, Copy)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

fn postcard_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    postcard::serialize_with_flavor::<_, _, usize>(v, postcard::ser_flavors::Size::default())
        .expect("messages serialize")
}

fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

impl WireSize {
    /// The postcard body of `msg` (the envelope not included).
    pub fn of(&mut self, msg: &mut Message<u32>) -> usize {
        let n = self.of_inner(msg);
        debug_assert_eq!(n, postcard_len(msg));
        n
    }

    /// The encoded bytes of a list of statuses: the length's varint and each status, with
    /// an empty list counted as its 1 byte elsewhere.
    fn statuses_len(&mut self, list: &[Arc<SignedStatus<u32>>]) -> usize {
        let mut sum = varint_len(list.len()) - 1;
        for s in list {
            sum += self
                .statuses
                .entry(Arc::as_ptr(s) as usize)
                .or_insert_with(|| (s.clone(), postcard_len(&**s)))
                .1;
        }
        sum
    }

    /// A bundle as `WireBundle` writes it: its encoding, as bytes (length varint first).
    fn bundle_len(&mut self, b: &Arc<Bundle>) -> usize {
        let n = self
            .bundles
            .entry(Arc::as_ptr(b) as usize)
            .or_insert_with(|| (b.clone(), b.encode().len()))
            .1;
        varint_len(n) + n
    }

    fn of_inner(&mut self, msg: &mut Message<u32>) -> usize {
        // Lists of statuses are taken out, the rest counted with them empty.
        let list = match msg {
            Message::Statuses(l) | Message::WaveStatuses { statuses: l, .. } => Some(l),
            Message::Digest(d) => Some(&mut d.notable),
            _ => None,
        };
        if let Some(list) = list {
            if list.is_empty() {
                return postcard_len(msg);
            }
            let taken = std::mem::take(list);
            let sum = self.statuses_len(&taken);
            let rest = postcard_len(msg);
            match msg {
                Message::Statuses(l) | Message::WaveStatuses { statuses: l, .. } => *l = taken,
                Message::Digest(d) => d.notable = taken,
                _ => unreachable!("matched above"),
            }
            return rest + sum;
        }
        // The variant index (one byte: Bundle is 10, Push 11), the bundle, the hops.
        match msg {
            Message::Bundle(b) => return 1 + self.bundle_len(&b.0),
            Message::Push { bundle, hops } => {
                return 1 + self.bundle_len(&bundle.0) + varint_len(*hops as usize)
            }
            _ => {}
        }
        let rows = match msg {
            Message::Rows(r) | Message::RowWant { rows: r, .. } => r,
            _ => return postcard_len(msg),
        };
        if rows.is_empty() {
            return postcard_len(msg);
        }
        let taken: Vec<Arc<ZoneRow<u32>>> = std::mem::take(rows);
        let mut sum = varint_len(taken.len()) - 1; // the empty list counted below as 1 byte
        for r in &taken {
            sum += *self
                .rows
                .entry((r.zone, r.issued_ms, r.issuer, r.sig.len()))
                .or_insert_with(|| postcard_len(&**r));
        }
        let rest = postcard_len(msg);
        match msg {
            Message::Rows(r) | Message::RowWant { rows: r, .. } => *r = taken,
            _ => unreachable!("matched above"),
        }
        rest + sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftless_core::proto::Digest;

    #[test]
    fn row_sizes_add_up_to_the_whole() {
        let row = |z: u32| {
            Arc::new(ZoneRow {
                zone: z,
                issued_ms: 1_704_067_200_000 + z as u64,
                issuer: z * 7,
                members: 150,
                counts: vec![],
                contacts: vec![1, 2, 300_000],
                sig: vec![7; 64],
                cert: None,
            })
        };
        for n in [1usize, 3, 127, 128, 300] {
            let rows: Vec<_> = (0..n as u32).map(row).collect();
            let mut m = Message::Digest(Digest {
                channels: vec![],
                rows: rows.iter().map(|r| (r.zone, r.issued_ms)).collect(),
                notable: vec![],
                reply: true,
                rows_print: 12345,
                want: vec![1, 2],
            });
            let whole = postcard_len(&m);
            assert_eq!(WireSize::default().of(&mut m), whole, "{n} rows");
            let mut m = Message::RowWant {
                zones: vec![4, 5, 600],
                rows: rows.clone(),
            };
            let whole = postcard_len(&m);
            assert_eq!(WireSize::default().of(&mut m), whole, "{n} rows");
            let mut m = Message::Rows(rows);
            let whole = postcard_len(&m);
            assert_eq!(WireSize::default().of(&mut m), whole, "{n} rows");
        }
    }
}
