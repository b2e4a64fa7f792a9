//! The essay's update models compared by the drift they leave (`mode = "models"`).
//!
//! Every server sees drift (a managed file changed by hand) as a Poisson process. What
//! differs is when a model undoes it:
//! - *ad hoc*: only when someone runs the tool on that server, which happens at a release,
//!   on a share of the servers;
//! - *immutable replacement*: at each release every server is replaced by a fresh image;
//! - *configuration synchronization* on an interval (Puppet/CFEngine style): at the
//!   server's next scheduled re-apply;
//! - *driftless*: configuration synchronization with a watch: after `drift_fix`.
//!
//! This mode is a model of the four schedules, not a run of the protocol core: the core's
//! own re-apply and drift handling is exercised by the protocol scenarios.

use crate::report::{round2, Check, Report};
use crate::scenario::{Expectation, Scenario};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::json;

const MODELS: [&str; 4] = [
    "ad hoc",
    "immutable replacement",
    "configuration synchronization",
    "driftless (sync + watch)",
];

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

pub fn run_models(sc: &Scenario, seed: u64) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let end = sc.duration_ms;
    let f = &sc.fleet;
    let rate_per_ms = f.drift_per_node_hour / 3_600_000.0;
    let interval = f.reapply_ms.unwrap_or(1_800_000).max(1);
    let release = f.release_every_ms.max(1);
    let samples = 400u64;
    let dt = (end / samples).max(1);
    // deltas[model][k]: change of outstanding drift at sample k.
    let mut deltas = vec![vec![0i64; samples as usize + 2]; MODELS.len()];
    let mut drift_ms = [0f64; 4];
    let mut events = 0u64;
    let mut stale_versions = 0f64;
    for _node in 0..sc.nodes {
        let phase = rng.next_u64() % interval;
        // Which releases someone applies by hand to this server (ad hoc).
        let n_releases = end / release + 1;
        let touched: Vec<bool> = (0..=n_releases)
            .map(|_| unit(&mut rng) < f.adhoc_share)
            .collect();
        // Ad hoc servers left alone run an old version until touched.
        let mut last_touch = 0u64;
        for (k, t) in touched.iter().enumerate().skip(1) {
            let at = k as u64 * release;
            if at > end {
                break;
            }
            if *t {
                last_touch = k as u64;
            } else {
                stale_versions += (k as u64 - last_touch) as f64;
            }
        }
        if rate_per_ms <= 0.0 {
            continue;
        }
        let mut t = 0f64;
        loop {
            t += -unit(&mut rng).ln() / rate_per_ms;
            if t >= end as f64 {
                break;
            }
            events += 1;
            let at = t as u64;
            let next_release = (at / release + 1) * release;
            let mut adhoc = u64::MAX;
            let mut k = at / release + 1;
            while k <= n_releases {
                if touched[k as usize] {
                    adhoc = k * release;
                    break;
                }
                k += 1;
            }
            let sync = if at < phase {
                phase
            } else {
                phase + ((at - phase) / interval + 1) * interval
            };
            let watch = at + f.drift_fix_ms;
            for (m, fix) in [adhoc, next_release, sync, watch].into_iter().enumerate() {
                let fix = fix.min(end);
                drift_ms[m] += (fix - at) as f64;
                deltas[m][(at / dt) as usize] += 1;
                if fix < end {
                    deltas[m][(fix / dt) as usize + 1] -= 1;
                }
            }
        }
    }
    let hours = |ms: f64| ms / 3_600_000.0;
    let mut figures = vec![
        ("drift_events".to_string(), json!(events)),
        ("release_every_ms".to_string(), json!(release)),
        ("reapply_interval_ms".to_string(), json!(interval)),
    ];
    for (m, name) in MODELS.iter().enumerate() {
        figures.push((
            format!("{name}: drift hours per node"),
            json!(round2(hours(drift_ms[m]) / sc.nodes as f64)),
        ));
        figures.push((
            format!("{name}: mean drifted resources per node"),
            json!(round2(drift_ms[m] / end as f64 / sc.nodes as f64)),
        ));
    }
    figures.push((
        "ad hoc: releases behind, averaged over releases and nodes".into(),
        json!(round2(
            stale_versions / sc.nodes as f64 / (end / release).max(1) as f64
        )),
    ));
    let mut drift_series = Vec::new();
    for (m, name) in MODELS.iter().enumerate() {
        let mut acc = 0i64;
        let mut pts = Vec::new();
        for k in 0..=samples {
            acc += deltas[m][k as usize];
            pts.push((k * dt, acc as f64));
        }
        drift_series.push((name.to_string(), pts));
    }
    let checks = sc
        .expect
        .iter()
        .map(|x| {
            let (passed, detail) = match x {
                Expectation::SyncLeastDrift => {
                    let ok = drift_ms[2] <= drift_ms[0] && drift_ms[2] <= drift_ms[1];
                    (
                        ok,
                        format!(
                            "drift hours per node: ad hoc {:.2}, immutable {:.2}, sync {:.2}, driftless {:.4}",
                            hours(drift_ms[0]) / sc.nodes as f64,
                            hours(drift_ms[1]) / sc.nodes as f64,
                            hours(drift_ms[2]) / sc.nodes as f64,
                            hours(drift_ms[3]) / sc.nodes as f64
                        ),
                    )
                }
                _ => (false, "not available in mode = \"models\"".into()),
            };
            Check {
                expectation: x.text(),
                passed,
                detail,
            }
        })
        .collect();
    Report {
        scenario: sc.name.clone(),
        file: sc.file.display().to_string(),
        about: sc.about.clone(),
        seed,
        nodes: sc.nodes,
        duration_ms: end,
        checks,
        figures,
        rows: Vec::new(),
        drift_series,
        waves: Vec::new(),
        wall_ms: 0,
    }
}
