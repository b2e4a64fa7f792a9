//! The push tree for bundles: a spanning tree over the active views, built from small
//! adverts before any release, so that even the first release is pushed (one latency per
//! hop) instead of pulled (announce, fetch, bundle: three).
//!
//! Each node advertises to its active peers `(root, dist, parent?)`: the lowest-ranked node
//! it can reach, its distance to it in hops, and whether the receiver is its parent. It takes
//! as parent the active peer that offers the lowest root, then the shortest distance (the
//! current parent kept on a tie, so the tree does not flap), ignoring peers that have it as
//! their parent. That is distance-vector routing towards one root (as the spanning-tree
//! protocol of Ethernet bridges): it settles on a breadth-first tree of the overlay, of depth
//! about log_5 N (6 at 10,000 nodes), and adverts are sent only when a node's own triple
//! changes, so an idle fleet sends none. When the root is gone, the distances left behind
//! count up until they pass [`MAX_DIST`] and the next-ranked node becomes root.
//!
//! The tree only makes a release faster: announcements to the other active peers and the
//! digests of every round still repair whatever a broken or half-built tree misses.

use super::{splitmix64, PeerId};

/// Distances at or beyond this are taken as "no route" (a root that left, counted up to).
/// A breadth-first tree of a 6-peer overlay is ~9 deep at 100,000 nodes.
pub const MAX_DIST: u8 = 24;
/// Adverts kept from peers that are not (yet) active: one may arrive before the
/// NeighborAccept that makes its sender active.
const MAX_ADVERTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Advert<P> {
    /// The sender's count of its adverts: messages can overtake each other.
    seq: u32,
    root: P,
    dist: u8,
    /// The sender has us as its parent.
    ours: bool,
}

/// What a node advertises: root, distance, parent.
pub type Position<P> = (P, u8, Option<P>);

#[derive(Debug, Clone)]
pub struct Tree<P> {
    me: P,
    pub root: P,
    pub dist: u8,
    pub parent: Option<P>,
    adverts: Vec<(P, Advert<P>)>,
    /// The position last advertised to the active peers.
    sent: Option<Position<P>>,
    /// Adverts sent so far (numbers them).
    seq: u32,
    /// An advert arrived or a peer left since the last [`Tree::recompute`].
    pub dirty: bool,
    /// No advert goes out before this (mono ms): see [`Tree::changed`].
    free_at: u64,
    /// A changed position waits for `free_at`.
    held: bool,
    /// A peer became active while an advert was held: it gets the held one (to every active
    /// peer), even if the position is back to the one last sent by then.
    pub greet: bool,
}

/// The order in which nodes become root: a hash of the id, re-mixed so that it does not
/// follow the fleet view's zones (which take the top bits of the id hash).
pub fn rank<P: PeerId>(p: &P) -> u64 {
    splitmix64(p.stable_hash() ^ 0x7472_6565)
}

impl<P: PeerId> Tree<P> {
    pub fn new(me: P) -> Self {
        Tree {
            root: me.clone(),
            me,
            dist: 0,
            parent: None,
            adverts: Vec::new(),
            sent: None,
            seq: 0,
            dirty: true,
            free_at: 0,
            held: false,
            greet: false,
        }
    }

    /// A peer's advert (one older than the last one heard from it is dropped).
    pub fn heard(&mut self, from: &P, seq: u32, root: P, dist: u8, ours: bool) {
        self.dirty = true;
        let a = Advert {
            seq,
            root,
            dist,
            ours,
        };
        if let Some(e) = self.adverts.iter_mut().find(|(p, _)| p == from) {
            if seq >= e.1.seq {
                e.1 = a;
            }
        } else {
            if self.adverts.len() >= MAX_ADVERTS {
                self.adverts.remove(0);
            }
            self.adverts.push((from.clone(), a));
        }
    }

    /// A peer left the active view (or the fleet).
    pub fn remove(&mut self, p: &P) {
        self.dirty = true;
        self.adverts.retain(|(q, _)| q != p);
    }

    /// Choose root, distance and parent again from the adverts of the active peers.
    pub fn recompute(&mut self, active: &dyn Fn(&P) -> bool) {
        self.dirty = false;
        // Adverts of peers that are not active are kept only for a moment (see MAX_ADVERTS).
        let mut best: (u64, u8, Option<&P>, &P) = (rank(&self.me), 0, None, &self.me);
        for (p, a) in &self.adverts {
            if a.ours || a.dist.saturating_add(1) >= MAX_DIST || !active(p) {
                continue;
            }
            let cand = (rank(&a.root), a.dist + 1);
            let better = cand < (best.0, best.1)
                || cand == (best.0, best.1) && self.parent.as_ref() == Some(p);
            if better {
                best = (cand.0, cand.1, Some(p), &a.root);
            }
        }
        let (root, dist, parent) = (best.3.clone(), best.1, best.2.cloned());
        self.root = root;
        self.dist = dist;
        self.parent = parent;
    }

    /// The position to advertise to every active peer if it changed since the last time,
    /// its number, and the parent it replaced (told as well, in case it is no longer active).
    /// At most one advert per `hold_ms`: a changed position within `hold_ms` of the last
    /// advert waits until then ([`Tree::held_until`]) and goes out as it is by then, so the
    /// flood of better roots at start-up costs a node a few adverts instead of one per
    /// improvement (a position that changed and changed back costs none).
    pub fn changed(&mut self, now_ms: u64, hold_ms: u64) -> Option<(Position<P>, u32, Option<P>)> {
        let now = (self.root.clone(), self.dist, self.parent.clone());
        if self.sent.as_ref() == Some(&now) && !self.greet {
            self.held = false;
            return None;
        }
        if now_ms < self.free_at {
            self.held = true;
            return None;
        }
        self.held = false;
        self.greet = false;
        self.free_at = now_ms.saturating_add(hold_ms);
        self.seq += 1;
        let old = self.sent.replace(now.clone()).and_then(|s| s.2);
        Some((
            now,
            self.seq,
            old.filter(|o| Some(o) != self.parent.as_ref()),
        ))
    }

    /// When a held advert may go out (see [`Tree::changed`]).
    pub fn held_until(&self) -> Option<u64> {
        self.held.then_some(self.free_at)
    }

    /// The current position and its number (to greet a new active peer with).
    pub fn position(&self) -> (Position<P>, u32) {
        (
            (self.root.clone(), self.dist, self.parent.clone()),
            self.seq,
        )
    }

    /// Peers that have us as their parent. Active views are not always symmetric (a
    /// NeighborAccept and a Disconnect can cross), so a child need not be in ours: a peer
    /// that took us as parent gets the push either way, and tells us when it leaves
    /// (a new advert, or a Disconnect).
    pub fn children(&self) -> impl Iterator<Item = &P> {
        self.adverts.iter().filter(|(_, a)| a.ours).map(|(p, _)| p)
    }

    /// Parent and children: the peers a bundle is pushed to.
    pub fn neighbours(&self, active: &dyn Fn(&P) -> bool) -> Vec<P> {
        let mut v: Vec<P> = self.parent.iter().filter(|p| active(p)).cloned().collect();
        v.extend(
            self.children()
                .filter(|c| !v.contains(c))
                .cloned()
                .collect::<Vec<_>>(),
        );
        v
    }

    pub fn is_neighbour(&self, p: &P) -> bool {
        self.parent.as_ref() == Some(p) || self.adverts.iter().any(|(q, a)| q == p && a.ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_within_the_hold_go_out_once_as_they_stand_at_its_end() {
        // The highest-ranked of 50 nodes: every other one offers a better root.
        let me = (0..50u32).max_by_key(rank).unwrap();
        let mut t = Tree::new(me);
        let active = |_: &u32| true;
        t.recompute(&active);
        // The first position goes out at once, and starts the hold.
        assert!(t.changed(1_000, 100).is_some());
        assert_eq!(t.held_until(), None);
        // Better roots heard within the hold: nothing goes out, the last one waits.
        let mut peers: Vec<u32> = (0..50).filter(|p| *p != me).collect();
        peers.sort_by_key(|p| std::cmp::Reverse(rank(p)));
        for (i, p) in peers.iter().take(3).enumerate() {
            t.heard(p, 1, *p, 0, false);
            t.recompute(&active);
            assert!(t.changed(1_010 + i as u64, 100).is_none());
        }
        assert_eq!(t.held_until(), Some(1_100));
        let ((root, dist, parent), seq, _) = t.changed(1_100, 100).expect("sent at the end");
        assert_eq!((root, dist, parent, seq), (peers[2], 1, Some(peers[2]), 2));
        assert_eq!(t.held_until(), None);
        // A change that is undone within the hold costs nothing.
        t.heard(&peers[3], 1, peers[3], 0, false);
        t.recompute(&active);
        assert_eq!(t.root, peers[3]);
        assert!(t.changed(1_150, 100).is_none());
        t.remove(&peers[3]);
        t.recompute(&active);
        assert!(t.changed(1_200, 100).is_none());
        assert_eq!(t.held_until(), None);
    }

    #[test]
    fn a_line_settles_on_the_lowest_ranked_root_and_counts_up_when_it_leaves() {
        // Four nodes in a line 0-1-2-3; adverts delivered until nothing changes.
        let n = 4u32;
        let mut trees: Vec<Tree<u32>> = (0..n).map(Tree::new).collect();
        let links = |i: u32| -> Vec<u32> {
            [i.wrapping_sub(1), i + 1]
                .into_iter()
                .filter(|j| *j < n)
                .collect()
        };
        let settle = |trees: &mut Vec<Tree<u32>>, gone: Option<u32>| {
            for _ in 0..200 {
                let mut msgs = Vec::new();
                for i in 0..n {
                    if Some(i) == gone {
                        continue;
                    }
                    let t = &mut trees[i as usize];
                    t.recompute(&|p| Some(*p) != gone && links(i).contains(p));
                    if let Some(((root, dist, parent), seq, _)) = t.changed(0, 0) {
                        for j in links(i) {
                            msgs.push((i, j, seq, root, dist, parent == Some(j)));
                        }
                    }
                }
                if msgs.is_empty() {
                    return;
                }
                // Delivered newest first: the older adverts are dropped.
                for (from, to, seq, root, dist, ours) in msgs.into_iter().rev() {
                    trees[to as usize].heard(&from, seq, root, dist, ours);
                }
            }
            panic!("did not settle");
        };
        settle(&mut trees, None);
        let best = (0..n).min_by_key(rank).unwrap();
        for (i, t) in trees.iter().enumerate() {
            assert_eq!(t.root, best);
            assert_eq!(t.dist as i64, (i as i64 - best as i64).abs());
        }
        // The root leaves: its neighbours drop it and the rest elect the next one.
        for i in links(best) {
            trees[i as usize].remove(&best);
        }
        settle(&mut trees, Some(best));
        let next = (0..n).filter(|i| *i != best).min_by_key(rank).unwrap();
        for i in (0..n).filter(|i| *i != best) {
            let t = &trees[i as usize];
            if (i < best) == (next < best) {
                assert_eq!(t.root, next, "node {i}");
            }
        }
    }
}
