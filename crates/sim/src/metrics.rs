//! What a run measures: adoption over time, bytes per node, hops, drift, refusals.

use driftless_core::bundle::BundleHash;
use driftless_core::definition::RolloutPolicy;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct VersionStats {
    pub published_at: u64,
    pub bundle_bytes: usize,
    /// (time, nodes at this version or above) at every change.
    pub adoption: Vec<(u64, u64)>,
    /// (time, nodes at exactly this version) at every change (a rollback lowers it).
    pub exact: Vec<(u64, u64)>,
    /// Hops of the announcement each accepting node fetched through: histogram.
    pub hops: BTreeMap<u16, u64>,
    pub accepted: u64,
    pub last_accept_ms: u64,
}

impl VersionStats {
    /// First time at least `count` nodes ran this version or a newer one.
    pub fn time_to(&self, count: u64) -> Option<u64> {
        self.adoption
            .iter()
            .find(|(_, c)| *c >= count)
            .map(|(t, _)| t.saturating_sub(self.published_at))
    }

    pub fn max_hops(&self) -> u16 {
        self.hops.keys().next_back().copied().unwrap_or(0)
    }

    /// Hops within which `share` of the accepting nodes got it.
    pub fn hops_for(&self, share: f64) -> u16 {
        let total: u64 = self.hops.values().sum();
        let want = (share * total as f64).ceil() as u64;
        let mut acc = 0;
        for (h, c) in &self.hops {
            acc += c;
            if acc >= want {
                return *h;
            }
        }
        0
    }
}

/// One version's progressive rollout, as the simulator sees it from outside: each node's wave
/// (computed as the core computes it), when each node first applied the version, and when it
/// first judged the rollout halted.
#[derive(Debug, Clone)]
pub struct RolloutStats {
    pub policy: RolloutPolicy,
    pub published_at: u64,
    /// Per node: its wave for this version.
    pub wave: Vec<u8>,
    /// Per wave: its nodes.
    pub sizes: Vec<u64>,
    /// Per wave: nodes running the version now.
    pub running: Vec<u64>,
    /// Per node: when it first ran the version.
    pub first_applied: Vec<Option<u64>>,
    /// Per node: when it first judged the rollout halted, and in which wave.
    pub halted: Vec<Option<(u64, u8)>>,
    /// Per node: its zone of the fleet view (all 0 unless set).
    pub zone: Vec<u32>,
}

impl RolloutStats {
    pub fn new(policy: RolloutPolicy, published_at: u64, wave: Vec<u8>) -> Self {
        let mut sizes = vec![0u64; policy.waves.len()];
        for w in &wave {
            sizes[*w as usize] += 1;
        }
        let n = wave.len();
        RolloutStats {
            running: vec![0; sizes.len()],
            policy,
            published_at,
            wave,
            sizes,
            first_applied: vec![None; n],
            halted: vec![None; n],
            zone: vec![0; n],
        }
    }

    fn in_wave(&self, k: usize) -> impl Iterator<Item = usize> + '_ {
        self.wave
            .iter()
            .enumerate()
            .filter(move |(_, w)| **w as usize == k)
            .map(|(i, _)| i)
    }

    /// When the first node of wave `k` ran the version.
    pub fn wave_started(&self, k: usize) -> Option<u64> {
        self.in_wave(k).filter_map(|i| self.first_applied[i]).min()
    }

    /// When the last node of wave `k` first ran the version (None: some never did, or the
    /// wave is empty).
    pub fn wave_complete(&self, k: usize) -> Option<u64> {
        if self.sizes[k] == 0 {
            return None;
        }
        self.in_wave(k)
            .map(|i| self.first_applied[i])
            .try_fold(0u64, |acc, t| t.map(|t| acc.max(t)))
    }

    /// Wave order among the nodes `keep` selects: for each wave k that started, each earlier
    /// wave with nodes among them must have completed (every such node ran the version) at
    /// least the bake time before. One line per violation.
    pub fn order_violations(&self, keep: &dyn Fn(usize) -> bool) -> Vec<String> {
        let bake = self.policy.bake_secs * 1000;
        let waves = self.sizes.len();
        let mut started = vec![None::<u64>; waves];
        let mut done = vec![Some(0u64); waves];
        let mut size = vec![0u64; waves];
        for i in (0..self.wave.len()).filter(|i| keep(*i)) {
            let w = self.wave[i] as usize;
            size[w] += 1;
            if let Some(t) = self.first_applied[i] {
                started[w] = Some(started[w].map_or(t, |s: u64| s.min(t)));
            }
            done[w] = match (done[w], self.first_applied[i]) {
                (Some(d), Some(t)) => Some(d.max(t)),
                _ => None,
            };
        }
        let mut bad = Vec::new();
        for (k, start) in started.iter().enumerate().skip(1) {
            let Some(start) = *start else { continue };
            for j in (0..k).filter(|j| size[*j] > 0) {
                match done[j] {
                    Some(d) if d + bake <= start => {}
                    d => bad.push(format!(
                        "wave {k} started at {} but wave {j} {}",
                        crate::scenario::fmt_ms(start),
                        match d {
                            Some(d) => format!(
                                "was complete only at {} (bake {})",
                                crate::scenario::fmt_ms(d),
                                crate::scenario::fmt_ms(bake)
                            ),
                            None => "never completed".into(),
                        }
                    )),
                }
            }
        }
        bad
    }

    /// Per wave: nodes that ever ran the version.
    pub fn ever_applied_by_wave(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.sizes.len()];
        for (i, t) in self.first_applied.iter().enumerate() {
            if t.is_some() {
                v[self.wave[i] as usize] += 1;
            }
        }
        v
    }

    /// Per wave: nodes that judged the rollout halted in that wave.
    pub fn halts_by_wave(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.sizes.len()];
        for (_, w) in self.halted.iter().flatten() {
            if let Some(x) = v.get_mut(*w as usize) {
                *x += 1;
            }
        }
        v
    }

    /// The first time any node judged the rollout halted.
    pub fn first_halt(&self) -> Option<(u64, u8)> {
        self.halted.iter().flatten().min().copied()
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub t_ms: u64,
    pub alive: usize,
    pub unhealthy: usize,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub t_ms: u64,
    pub alive: usize,
    pub unhealthy: usize,
    pub drift_open: i64,
    /// Bytes sent per node per second over the interval ending here.
    pub bytes_per_node_s: f64,
    /// Share of all nodes at each published version or above.
    pub shares: Vec<(u64, f64)>,
    /// Per rollout version: per wave, the share of the wave's nodes running it.
    pub waves: Vec<(u64, Vec<f64>)>,
}

pub struct Metrics {
    pub n: usize,
    pub sample_every: u64,
    pub bytes_sent: u64,
    interval_bytes: u64,
    pub bundle_rx: Vec<u64>,
    pub drift_open: i64,
    pub drift_events: u64,
    pub crashes: u64,
    pub untrusted_applied: u64,
    pub untrusted_accepted: u64,
    pub refused: BTreeMap<&'static str, u64>,
    /// Per message kind: (kind, bytes sent, messages sent), in the order first seen (a kind
    /// is found by its address first: a short walk, where a map of strings cost two string
    /// searches per message). [`Metrics::by_kind`] and [`Metrics::count_by_kind`] sort them.
    kinds: Vec<(&'static str, u64, u64)>,
    pub versions: BTreeMap<u64, VersionStats>,
    /// Versions published with a rollout policy.
    pub rollouts: BTreeMap<u64, RolloutStats>,
    /// Exact applied version → nodes.
    applied: BTreeMap<u64, u64>,
    pub rows: Vec<Row>,
    /// (time, exact nodes, sampled nodes) for each fleet-view check.
    pub fleet_checks: Vec<(u64, usize, usize)>,
}

impl Metrics {
    pub fn new(n: usize, duration_ms: u64) -> Self {
        let mut applied = BTreeMap::new();
        applied.insert(0, n as u64);
        Metrics {
            n,
            sample_every: (duration_ms / 600).clamp(100, 60_000),
            bytes_sent: 0,
            interval_bytes: 0,
            bundle_rx: vec![0; n],
            drift_open: 0,
            drift_events: 0,
            crashes: 0,
            untrusted_applied: 0,
            untrusted_accepted: 0,
            refused: BTreeMap::new(),
            kinds: Vec::new(),
            versions: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            applied,
            rows: Vec::new(),
            fleet_checks: Vec::new(),
        }
    }

    /// `count` messages of `kind` sent, `bytes` in all (a shard's share, merged).
    pub fn sent_many(&mut self, kind: &'static str, bytes: u64, count: u64) {
        add_kind(&mut self.kinds, kind, bytes, count);
        self.bytes_sent += bytes;
        self.interval_bytes += bytes;
    }

    /// Bytes sent by message kind.
    pub fn by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.kinds.iter().map(|k| (k.0, k.1)).collect()
    }

    /// Messages sent by kind.
    pub fn count_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.kinds.iter().map(|k| (k.0, k.2)).collect()
    }

    pub fn bundle_received(&mut self, to: u32, bytes: u64) {
        self.bundle_rx[to as usize] += bytes;
    }

    pub fn published(&mut self, version: u64, now: u64, bytes: usize) {
        let c = self.count_ge(version);
        let exact = self.applied.get(&version).copied().unwrap_or(0);
        let v = self.versions.entry(version).or_default();
        v.published_at = now;
        v.bundle_bytes = bytes;
        v.adoption.push((now, c));
        v.exact.push((now, exact));
    }

    pub fn accepted(&mut self, version: u64, hops: u16, now: u64) {
        if let Some(v) = self.versions.get_mut(&version) {
            *v.hops.entry(hops).or_default() += 1;
            v.accepted += 1;
            v.last_accept_ms = now;
        }
    }

    fn count_ge(&self, version: u64) -> u64 {
        self.applied.range(version..).map(|(_, c)| *c).sum()
    }

    /// Node `node` now runs `new` instead of `old` (newer, or older after a rollback).
    pub fn applied(
        &mut self,
        node: u32,
        old: u64,
        new: u64,
        now: u64,
        _releases: &BTreeMap<u64, (BundleHash, f64)>,
    ) {
        if let Some(c) = self.applied.get_mut(&old) {
            *c = c.saturating_sub(1);
        }
        *self.applied.entry(new).or_default() += 1;
        // "At V or above" changes for the versions between the two.
        let (lo, hi) = (old.min(new), old.max(new));
        let versions: Vec<u64> = self.versions.range(lo + 1..=hi).map(|(v, _)| *v).collect();
        for v in versions {
            let c = self.count_ge(v);
            self.versions
                .get_mut(&v)
                .expect("listed")
                .adoption
                .push((now, c));
        }
        for v in [old, new] {
            let c = self.applied.get(&v).copied().unwrap_or(0);
            if let Some(st) = self.versions.get_mut(&v) {
                st.exact.push((now, c));
            }
        }
        for (v, r) in self.rollouts.iter_mut() {
            let w = r.wave[node as usize] as usize;
            if old == *v {
                r.running[w] = r.running[w].saturating_sub(1);
            }
            if new == *v {
                r.running[w] += 1;
                r.first_applied[node as usize].get_or_insert(now);
            }
        }
    }

    pub fn push_sample(&mut self, s: Sample) {
        let dt = match self.rows.last() {
            Some(r) => s.t_ms.saturating_sub(r.t_ms),
            None => 0,
        };
        let bps = if dt > 0 {
            self.interval_bytes as f64 / self.n as f64 / (dt as f64 / 1000.0)
        } else {
            0.0
        };
        self.interval_bytes = 0;
        let shares = self
            .versions
            .keys()
            .map(|v| (*v, self.count_ge(*v) as f64 / self.n as f64))
            .collect();
        let waves = self
            .rollouts
            .iter()
            .map(|(v, r)| {
                let shares = r
                    .running
                    .iter()
                    .zip(&r.sizes)
                    .map(|(a, n)| if *n == 0 { 0.0 } else { *a as f64 / *n as f64 })
                    .collect();
                (*v, shares)
            })
            .collect();
        self.rows.push(Row {
            t_ms: s.t_ms,
            alive: s.alive,
            unhealthy: s.unhealthy,
            drift_open: self.drift_open,
            bytes_per_node_s: bps,
            shares,
            waves,
        });
    }

    /// Mean bytes sent per node per second between `from` and `to` (virtual ms).
    pub fn bytes_per_node_s(&self, from: u64, to: u64) -> f64 {
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.t_ms > from && r.t_ms <= to)
            .collect();
        if rows.is_empty() {
            return 0.0;
        }
        rows.iter().map(|r| r.bytes_per_node_s).sum::<f64>() / rows.len() as f64
    }

    /// Bundle bytes received per node that received any, as (mean, max).
    pub fn bundle_rx_per_node(&self) -> (f64, u64) {
        let got: Vec<u64> = self.bundle_rx.iter().copied().filter(|b| *b > 0).collect();
        if got.is_empty() {
            return (0.0, 0);
        }
        let mean = got.iter().sum::<u64>() as f64 / got.len() as f64;
        (mean, got.iter().copied().max().unwrap_or(0))
    }
}

/// Add `count` messages of `kind`, `bytes` in all, to a tally by kind. Kinds are static
/// strings, so a pointer compare finds the entry first; equal text from another place is
/// found by content.
pub(crate) fn add_kind(
    kinds: &mut Vec<(&'static str, u64, u64)>,
    kind: &'static str,
    bytes: u64,
    count: u64,
) {
    let at = match kinds.iter().position(|k| std::ptr::eq(k.0, kind)) {
        Some(i) => Some(i),
        None => kinds.iter().position(|k| k.0 == kind),
    };
    match at.map(|i| &mut kinds[i]) {
        Some(k) => {
            k.1 += bytes;
            k.2 += count;
        }
        None => kinds.push((kind, bytes, count)),
    }
}
