//! What a run measures: adoption over time, bytes per node, hops, drift, refusals.

use driftless_core::bundle::BundleHash;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct VersionStats {
    pub published_at: u64,
    pub bundle_bytes: usize,
    /// (time, nodes at this version or above) at every change.
    pub adoption: Vec<(u64, u64)>,
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
    /// Bytes sent by message kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Messages sent by kind.
    pub count_by_kind: BTreeMap<&'static str, u64>,
    pub versions: BTreeMap<u64, VersionStats>,
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
            by_kind: BTreeMap::new(),
            count_by_kind: BTreeMap::new(),
            versions: BTreeMap::new(),
            applied,
            rows: Vec::new(),
            fleet_checks: Vec::new(),
        }
    }

    pub fn sent(&mut self, kind: &'static str, bytes: u64) {
        *self.by_kind.entry(kind).or_default() += bytes;
        *self.count_by_kind.entry(kind).or_default() += 1;
        self.bytes_sent += bytes;
        self.interval_bytes += bytes;
    }

    pub fn bundle_received(&mut self, to: u32, bytes: u64) {
        self.bundle_rx[to as usize] += bytes;
    }

    pub fn published(&mut self, version: u64, now: u64, bytes: usize) {
        let c = self.count_ge(version);
        let v = self.versions.entry(version).or_default();
        v.published_at = now;
        v.bundle_bytes = bytes;
        v.adoption.push((now, c));
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

    pub fn applied(
        &mut self,
        old: u64,
        new: u64,
        now: u64,
        _releases: &BTreeMap<u64, (BundleHash, f64)>,
    ) {
        if let Some(c) = self.applied.get_mut(&old) {
            *c = c.saturating_sub(1);
        }
        *self.applied.entry(new).or_default() += 1;
        let versions: Vec<u64> = self.versions.range(..=new).map(|(v, _)| *v).collect();
        for v in versions {
            if v > old {
                let c = self.count_ge(v);
                self.versions
                    .get_mut(&v)
                    .expect("listed")
                    .adoption
                    .push((now, c));
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
        self.rows.push(Row {
            t_ms: s.t_ms,
            alive: s.alive,
            unhealthy: s.unhealthy,
            drift_open: self.drift_open,
            bytes_per_node_s: bps,
            shares,
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
