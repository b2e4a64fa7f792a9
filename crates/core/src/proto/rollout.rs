//! Progressive rollouts without a controller: every node derives its own wave from a hash of
//! its id and the version, and decides for itself from the fleet view when to apply.
//!
//! Rules (SPEC "Progressive rollouts without a controller"):
//! - A node's wave for version v is the first `k` with `u < waves[k]`, where `u` in [0, 1) is a
//!   hash of (node, v): each version draws new waves, so no node is always first.
//! - Wave 0 applies at once. A node of wave k > 0 applies v when every earlier wave is
//!   *complete* (each of its nodes that the view sees has applied v, and its unhealthy share
//!   is within the threshold) and has *baked*: stayed complete for the bake time, as measured
//!   on this node's own monotonic clock from when it first saw the wave complete (so clock
//!   skew between nodes does not matter). Before judging any wave, every node that reports the
//!   channel must have received v (no wave looks complete just because its late members
//!   have not heard of v yet), and a wave's bake starts only once that holds. An empty wave
//!   is complete and bakes like any complete wave, from when this node first saw it so: a
//!   node that has just (re)started sees only itself until gossip refills its view, so every
//!   earlier wave looks empty to it, and without the bake it would jump them all at once.
//! - Waves are judged only on a view that looks whole (`FleetView::partial`: a row for every
//!   zone, the own zone table as full as its row and the neighbours say, no zone far smaller
//!   than the others): otherwise the node waits, and no bake starts. A bake also starts anew
//!   when the view grew since it started, for it was judged without those nodes. A node that
//!   just restarted, or that lags behind its zone, so waits until its view fills: it may be
//!   slower, never earlier.
//! - Waves are judged on the nodes the view sees: a node that vanishes mid-bake ages out of
//!   the view and no longer holds its wave back.
//! - **Advances need the own zone's word too.** Summaries (zone rows) can be forged by an
//!   admitted but compromised node, signed statuses cannot. Waves are drawn by hash, so every
//!   zone holds members of every wave of some size, and a node holds its own zone's statuses
//!   in full: a wave counts as complete only when the summaries say so *and* every member of
//!   the own zone in that wave (its wave recomputed from its id) runs v. The bake clock runs
//!   on that, so the own zone's members must also keep running it for the bake; their health
//!   is the halt rule's (one sick member below the threshold holds nothing back).
//! - **Halts rest on evidence**: a wave whose *signed* unhealthy statuses (running v) exceed
//!   `max_unhealthy` of the wave's size halts the rollout, and only when they come from at
//!   least two distinct nodes (one, for a one-node wave), each counted in the wave its id
//!   draws, not the one it claims. Sizes and applied counts are summaries (advances rest on
//!   them); the unhealthy numerator is counted only from signed statuses a node holds, never
//!   from a number another node added up, and the size is never taken below the own zone's
//!   members of the wave, so a forged count cannot shrink it to one liar's status. A sick status stays
//!   evidence after its node recovers (rolled back, healthy again): it is kept apart and
//!   spread with the notable statuses (`FleetView::evidence`), so the halt still reaches
//!   nodes that never saw the sick ones sick.

use crate::definition::RolloutPolicy;

/// A node's wave for `version`: `node_hash` is the node's stable id hash.
pub fn wave_of(node_hash: u64, version: u64, waves: &[f64]) -> u8 {
    let h = super::splitmix64(node_hash ^ super::splitmix64(version.wrapping_add(0x5eed)));
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    waves
        .iter()
        .position(|w| u < *w)
        .unwrap_or(waves.len().saturating_sub(1)) as u8
}

/// What the fleet view shows of one wave of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaveTally {
    /// Nodes that hold the version and fall in this wave (from summaries).
    pub nodes: u64,
    /// Of those, nodes that run it (state applied).
    pub applied: u64,
    /// Of those, nodes that run it and say they are healthy.
    pub healthy: u64,
    /// Signed statuses held of nodes of this wave that run the version and are unhealthy.
    pub unhealthy_evidence: u64,
    /// The wave's expected size: its fraction of the nodes that report the channel. Early in a
    /// rollout few nodes have reported the version yet; judging the unhealthy share against
    /// the expected size keeps one early unhealthy status from halting a large wave.
    pub expected: u64,
    /// Members of the judging node's own zone in this wave, from their signed statuses (the
    /// wave recomputed from each node's id, never taken from what it claims), whatever
    /// version they hold: evidence, not a summary.
    pub own_nodes: u64,
    /// Of those, members that run the version.
    pub own_ready: u64,
}

/// Signed unhealthy statuses of distinct nodes a halt needs, unless the wave is known, from
/// signed statuses alone, to hold a single node: one node's word alone halts nothing.
pub const MIN_HALT_EVIDENCE: u64 = 2;

impl WaveTally {
    /// The size the unhealthy share is taken over: the largest of the nodes the summaries
    /// show, the expected size and the own zone's members (a forged count can shrink the
    /// first two, never the last).
    pub fn size(&self) -> u64 {
        self.nodes.max(self.expected).max(self.own_nodes)
    }

    pub fn unhealthy_share(&self) -> f64 {
        let size = self.size();
        if size == 0 {
            0.0
        } else {
            self.unhealthy_evidence as f64 / size as f64
        }
    }

    /// Halt evidence: the unhealthy share passes `max_unhealthy`, and it rests on the signed
    /// statuses of at least [`MIN_HALT_EVIDENCE`] distinct nodes. One is enough only for a
    /// wave of one node, and only when `exact` (the own zone is the whole fleet and the view
    /// looks whole): elsewhere the size rests on summaries, and a liar that shrinks a wave
    /// to one node in its rows (to a node that just restarted, say, whose own table is still
    /// empty) would halt it on its own status.
    pub fn halts(&self, max_unhealthy: f64, exact: bool) -> bool {
        let need = if exact && self.own_nodes <= 1 && self.size() <= 1 {
            1
        } else {
            MIN_HALT_EVIDENCE
        };
        self.unhealthy_evidence >= need && self.unhealthy_share() > max_unhealthy
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Apply now.
    Apply,
    /// Not yet: `wave` is what holds this node back.
    Wait { wave: u8, why: Wait },
    /// The rollout halts: `wave`'s signed unhealthy statuses passed the threshold.
    Halt { wave: u8, unhealthy: u64, of: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The fleet view may be missing part of the fleet (just restarted, zone sync or rows
    /// lagging): no wave is judged on it.
    PartialView,
    /// Some nodes of the fleet have not received the version yet.
    NotAllReceived,
    /// Some nodes of the wave have not applied it yet.
    NotApplied,
    /// The wave is complete but has not baked for the bake time yet.
    Baking,
}

impl Wait {
    pub fn as_str(self) -> &'static str {
        match self {
            Wait::PartialView => "waiting for the fleet view to fill",
            Wait::NotAllReceived => "waiting for every node to receive the version",
            Wait::NotApplied => "waiting for the wave to apply",
            Wait::Baking => "baking",
        }
    }
}

/// What the judging node knows of its view besides the tallies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Every node that reports the channel holds the version.
    pub all_received: bool,
    /// The view looks whole (`FleetView::partial` found nothing missing).
    pub whole: bool,
    /// The own zone is the whole fleet (one zone) and the view looks whole: the own zone's
    /// signed statuses show every node, so a wave's size is known without summaries.
    pub exact: bool,
}

/// Judge the rollout of one version for a node of `my_wave`.
///
/// `tallies[k]` is wave k (missing waves are empty); `baked(k)` says wave k has been complete
/// for the bake time (the caller keeps the clock, and starts it only on a whole view where
/// all received the version). Halts rest on evidence and are judged on any view; advances
/// only on a whole one.
pub fn decide(
    policy: &RolloutPolicy,
    my_wave: u8,
    tallies: &[WaveTally],
    view: View,
    baked: &mut dyn FnMut(u8) -> bool,
) -> Decision {
    for (k, t) in tallies.iter().enumerate() {
        if (t.nodes > 0 || t.own_nodes > 0) && t.halts(policy.max_unhealthy, view.exact) {
            return Decision::Halt {
                wave: k as u8,
                unhealthy: t.unhealthy_evidence,
                of: t.nodes.max(t.own_nodes),
            };
        }
    }
    if my_wave == 0 {
        return Decision::Apply;
    }
    if !view.whole {
        return Decision::Wait {
            wave: my_wave - 1,
            why: Wait::PartialView,
        };
    }
    if !view.all_received {
        return Decision::Wait {
            wave: my_wave - 1,
            why: Wait::NotAllReceived,
        };
    }
    for k in 0..my_wave {
        let t = tallies.get(k as usize).copied().unwrap_or_default();
        if !complete(&t) {
            return Decision::Wait {
                wave: k,
                why: Wait::NotApplied,
            };
        }
        if !baked(k) {
            return Decision::Wait {
                wave: k,
                why: Wait::Baking,
            };
        }
    }
    Decision::Apply
}

/// The wave is done as far as this node can tell: the summaries say every node of the wave
/// runs the version (its unhealthy share is judged by the halt rule), **and** the signed
/// statuses of the own zone agree: each of its members in the wave runs the version. A
/// summary can be forged by an admitted but compromised node; the own zone's
/// statuses cannot, and since waves are drawn by hash, every zone holds members of every
/// wave of some size: a lie that a wave is done does not move a node whose own zone shows
/// otherwise. (A wave with no member in the own zone rests on the summaries alone.)
pub fn complete(t: &WaveTally) -> bool {
    t.applied >= t.nodes && t.own_ready >= t.own_nodes
}

/// What one judgement does to a wave's bake clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The wave is not complete: its bake starts anew when it is.
    Reset,
    /// Complete, and every node the view shows holds the version: the clock runs (it starts
    /// now if it was not running).
    Run,
    /// Complete, but some nodes the view shows have not received the version yet: a running
    /// clock goes on, a stopped one does not start (the wave may look complete, or empty,
    /// only because its members' statuses have not arrived).
    Hold,
}

pub fn bake_clock(t: &WaveTally, all_received: bool) -> Clock {
    if !complete(t) {
        Clock::Reset
    } else if all_received {
        Clock::Run
    } else {
        Clock::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::OnFailure;

    fn policy() -> RolloutPolicy {
        RolloutPolicy {
            waves: vec![0.01, 0.1, 0.5, 1.0],
            bake_secs: 300,
            max_unhealthy: 0.05,
            on_failure: OnFailure::Rollback,
        }
    }

    fn seen(all_received: bool) -> View {
        View {
            all_received,
            whole: true,
            exact: true,
        }
    }

    fn t(nodes: u64, applied: u64, unhealthy: u64) -> WaveTally {
        WaveTally {
            nodes,
            applied,
            healthy: applied - unhealthy,
            unhealthy_evidence: unhealthy,
            ..WaveTally::default()
        }
    }

    #[test]
    fn waves_follow_the_fractions_and_change_with_the_version() {
        let p = policy();
        let mut per_wave = [0usize; 4];
        for n in 0..100_000u64 {
            per_wave[wave_of(super::super::splitmix64(n), 7, &p.waves) as usize] += 1;
        }
        // 1%, 9%, 40%, 50% of 100,000 within a few percent of each.
        for (got, want) in per_wave.iter().zip([1_000.0, 9_000.0, 40_000.0, 50_000.0]) {
            assert!((*got as f64 - want).abs() < want * 0.1, "{per_wave:?}");
        }
        let same = (0..1000u64)
            .filter(|n| wave_of(*n, 7, &p.waves) == wave_of(*n, 8, &p.waves))
            .count();
        assert!(same < 1000, "waves must be drawn anew for each version");
    }

    #[test]
    fn wave_zero_goes_at_once_later_waves_wait_for_apply_and_bake() {
        let p = policy();
        let tallies = [t(10, 4, 0), t(90, 0, 0)];
        assert_eq!(
            decide(&p, 0, &tallies, seen(true), &mut |_| true),
            Decision::Apply
        );
        assert_eq!(
            decide(&p, 1, &tallies, seen(true), &mut |_| true),
            Decision::Wait {
                wave: 0,
                why: Wait::NotApplied
            }
        );
        let done = [t(10, 10, 0), t(90, 0, 0)];
        assert_eq!(
            decide(&p, 1, &done, seen(true), &mut |_| false),
            Decision::Wait {
                wave: 0,
                why: Wait::Baking
            }
        );
        assert_eq!(
            decide(&p, 1, &done, seen(true), &mut |_| true),
            Decision::Apply
        );
        assert_eq!(
            decide(&p, 1, &done, seen(false), &mut |_| true),
            Decision::Wait {
                wave: 0,
                why: Wait::NotAllReceived
            }
        );
    }

    #[test]
    fn summaries_saying_a_wave_is_done_do_not_move_a_node_whose_own_zone_disagrees() {
        let p = policy();
        // The summaries (forgeable) say wave 0 is done; the own zone's signed statuses show
        // one of its 3 wave-0 members not running v yet.
        let lie = [
            WaveTally {
                own_nodes: 3,
                own_ready: 2,
                ..t(10, 10, 0)
            },
            t(90, 0, 0),
        ];
        assert!(!complete(&lie[0]));
        assert_eq!(bake_clock(&lie[0], true), Clock::Reset);
        assert_eq!(
            decide(&p, 1, &lie, seen(true), &mut |_| true),
            Decision::Wait {
                wave: 0,
                why: Wait::NotApplied
            }
        );
        // Once the own zone agrees, the wave bakes and the node goes.
        let agreed = [
            WaveTally {
                own_nodes: 3,
                own_ready: 3,
                ..t(10, 10, 0)
            },
            t(90, 0, 0),
        ];
        assert_eq!(bake_clock(&agreed[0], true), Clock::Run);
        assert_eq!(
            decide(&p, 1, &agreed, seen(true), &mut |_| true),
            Decision::Apply
        );
    }

    #[test]
    fn a_bake_starts_only_once_every_node_seen_holds_the_version() {
        // Wave 0 looks empty (or complete) while some nodes seen have not received v: its
        // members' statuses may not have arrived, so its clock does not start yet.
        assert_eq!(bake_clock(&t(0, 0, 0), false), Clock::Hold);
        assert_eq!(bake_clock(&t(4, 4, 0), false), Clock::Hold);
        assert_eq!(bake_clock(&t(4, 4, 0), true), Clock::Run);
        assert_eq!(bake_clock(&t(0, 0, 0), true), Clock::Run);
        assert_eq!(bake_clock(&t(5, 4, 0), true), Clock::Reset);
        assert_eq!(bake_clock(&t(5, 4, 0), false), Clock::Reset);
    }

    #[test]
    fn empty_waves_are_complete_and_bake_like_the_others() {
        let p = policy();
        let tallies = [t(0, 0, 0), t(0, 0, 0), t(50, 50, 0)];
        let mut asked = Vec::new();
        assert_eq!(
            decide(&p, 3, &tallies, seen(true), &mut |k| {
                asked.push(k);
                true
            }),
            Decision::Apply
        );
        assert_eq!(asked, vec![0, 1, 2], "every earlier wave bakes");
        // A view that shows nothing yet (a node just restarted) does not let it jump.
        assert_eq!(
            decide(&p, 3, &[t(0, 0, 0); 3], seen(true), &mut |k| k > 0),
            Decision::Wait {
                wave: 0,
                why: Wait::Baking
            }
        );
    }

    #[test]
    fn halts_rest_on_signed_unhealthy_statuses_past_the_threshold() {
        let p = policy();
        // 2 of 10 unhealthy = 20% > 5%: halt, whatever wave the node is in.
        let tallies = [t(10, 10, 2), t(90, 0, 0)];
        for w in 0..4 {
            assert_eq!(
                decide(&p, w, &tallies, seen(true), &mut |_| true),
                Decision::Halt {
                    wave: 0,
                    unhealthy: 2,
                    of: 10
                }
            );
        }
        // 1 of 10 is 10% too, but one node's word alone halts nothing.
        let one = [t(10, 10, 1), t(90, 0, 0)];
        assert_eq!(
            decide(&p, 1, &one, seen(true), &mut |_| true),
            Decision::Apply
        );
        // Unless the wave is that one node, as the signed statuses of a one-zone fleet show.
        let sole = [
            WaveTally {
                own_nodes: 1,
                own_ready: 1,
                ..t(1, 1, 1)
            },
            t(90, 0, 0),
        ];
        assert!(matches!(
            decide(&p, 1, &sole, seen(true), &mut |_| true),
            Decision::Halt { wave: 0, .. }
        ));
        // Not when the size of one comes from summaries (a liar's rows can shrink a wave,
        // and a node that just restarted has no own members to set against them).
        let multi = View {
            exact: false,
            ..seen(true)
        };
        assert_eq!(decide(&p, 1, &sole, multi, &mut |_| true), Decision::Apply);
        assert_eq!(
            decide(&p, 1, &[t(1, 1, 1), t(90, 0, 0)], multi, &mut |_| true),
            Decision::Apply
        );
        // Forged counts that shrink the wave do not shrink it below the own zone's members
        // (signed statuses): 2 sick of a wave of 60 in the own zone is 3%, no halt.
        let shrunk = [
            WaveTally {
                own_nodes: 60,
                own_ready: 60,
                ..t(2, 2, 2)
            },
            t(90, 0, 0),
        ];
        assert_eq!(
            decide(&p, 1, &shrunk, seen(true), &mut |_| true),
            Decision::Apply
        );
        // 1 of 100 = 1%: within the threshold, the rollout goes on.
        let ok = [t(100, 100, 1)];
        assert_eq!(
            decide(&p, 1, &ok, seen(true), &mut |_| true),
            Decision::Apply
        );
        // One early unhealthy status among the two nodes seen so far of a wave expected to
        // hold 100 does not halt it.
        let early = [WaveTally {
            expected: 100,
            ..t(2, 2, 1)
        }];
        assert_eq!(
            decide(&p, 0, &early, seen(false), &mut |_| true),
            Decision::Apply
        );
    }

    #[test]
    fn nothing_advances_on_a_partial_view_but_halts_do() {
        let p = policy();
        let done = [t(10, 10, 0), t(90, 90, 0), t(0, 0, 0)];
        let partial = View {
            all_received: true,
            whole: false,
            exact: false,
        };
        assert_eq!(
            decide(&p, 2, &done, partial, &mut |_| true),
            Decision::Wait {
                wave: 1,
                why: Wait::PartialView
            }
        );
        // Wave 0 does not wait for anything.
        assert_eq!(
            decide(&p, 0, &done, partial, &mut |_| true),
            Decision::Apply
        );
        // Signed evidence halts whatever the view.
        let bad = [t(10, 10, 2), t(90, 0, 0)];
        assert!(matches!(
            decide(&p, 1, &bad, partial, &mut |_| true),
            Decision::Halt { wave: 0, .. }
        ));
    }
}
