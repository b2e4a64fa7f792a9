//! The result of a run: expectations checked, figures, and the files written to `--out`.

use crate::engine::Engine;
use crate::metrics::Row;
use crate::scenario::{fmt_ms, Expectation, Scenario};
use crate::Error;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Check {
    pub expectation: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub file: String,
    pub about: String,
    pub seed: u64,
    pub nodes: usize,
    pub duration_ms: u64,
    pub checks: Vec<Check>,
    /// (name, value) pairs for the summary table and JSON, in a fixed order.
    pub figures: Vec<(String, Value)>,
    pub rows: Vec<Row>,
    /// Extra series for plots: (name, points (t_ms, value)).
    pub drift_series: Vec<(String, Vec<(u64, f64)>)>,
    /// Per version published with a rollout policy: its nodes per wave (`rows[..].waves`
    /// holds the share of each wave running it over time).
    pub waves: Vec<(u64, Vec<u64>)>,
    /// Wall time of the run: for the terminal only, never written to `--out`.
    pub wall_ms: u64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn figure(&self, name: &str) -> Option<&Value> {
        self.figures.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The summary table printed on the terminal.
    pub fn table(&self) -> String {
        let mut s = format!(
            "scenario {} ({} nodes, {} virtual, seed {})\n",
            self.scenario,
            self.nodes,
            fmt_ms(self.duration_ms),
            self.seed
        );
        let w = self
            .figures
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(10);
        for (name, v) in &self.figures {
            let v = match v {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            s.push_str(&format!("  {name:<w$}  {v}\n"));
        }
        for c in &self.checks {
            s.push_str(&format!(
                "  [{}] {} ({})\n",
                if c.passed { "pass" } else { "FAIL" },
                c.expectation,
                c.detail
            ));
        }
        s.push_str(&format!(
            "  {} in {:.1} s wall time{}\n",
            if self.passed() { "passed" } else { "FAILED" },
            self.wall_ms as f64 / 1000.0,
            if self.passed() {
                String::new()
            } else {
                format!("; reproduce with --seed {}", self.seed)
            }
        ));
        s
    }

    pub fn to_json(&self) -> Value {
        let mut figures = serde_json::Map::new();
        for (n, v) in &self.figures {
            figures.insert(n.clone(), v.clone());
        }
        json!({
            "scenario": self.scenario,
            "file": self.file,
            "about": self.about,
            "seed": self.seed,
            "nodes": self.nodes,
            "duration_ms": self.duration_ms,
            "passed": self.passed(),
            "expectations": self.checks.iter().map(|c| json!({
                "expectation": c.expectation, "passed": c.passed, "detail": c.detail,
            })).collect::<Vec<_>>(),
            "figures": Value::Object(figures),
        })
    }

    pub fn csv(&self) -> String {
        let versions: Vec<u64> = self
            .rows
            .last()
            .map(|r| r.shares.iter().map(|(v, _)| *v).collect())
            .unwrap_or_default();
        let waves: Vec<(u64, usize)> = self
            .waves
            .iter()
            .flat_map(|(v, sizes)| (0..sizes.len()).map(move |k| (*v, k)))
            .collect();
        let mut s = String::from("t_ms,alive,unhealthy,drift_open,bytes_per_node_s");
        for v in &versions {
            s.push_str(&format!(",share_v{v}"));
        }
        for (v, k) in &waves {
            s.push_str(&format!(",v{v}_wave{k}_running"));
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&format!(
                "{},{},{},{},{:.1}",
                r.t_ms, r.alive, r.unhealthy, r.drift_open, r.bytes_per_node_s
            ));
            for v in &versions {
                let share = r
                    .shares
                    .iter()
                    .find(|(x, _)| x == v)
                    .map_or(0.0, |(_, s)| *s);
                s.push_str(&format!(",{share:.5}"));
            }
            for (v, k) in &waves {
                let share = r
                    .waves
                    .iter()
                    .find(|(x, _)| x == v)
                    .and_then(|(_, w)| w.get(*k))
                    .copied()
                    .unwrap_or(0.0);
                s.push_str(&format!(",{share:.5}"));
            }
            s.push('\n');
        }
        s
    }

    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let err = |p: &Path, e: std::io::Error| Error::Output {
            path: p.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        let mut files: Vec<(&str, String)> = vec![
            (
                "summary.json",
                serde_json::to_string_pretty(&self.to_json()).expect("json") + "\n",
            ),
            ("timeline.csv", self.csv()),
            ("adoption.svg", crate::plot::adoption(self)),
            ("bytes.svg", crate::plot::bytes(self)),
            ("drift.svg", crate::plot::drift(self)),
        ];
        if !self.waves.is_empty() {
            files.push(("rollout.svg", crate::plot::rollout(self)));
        }
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| err(&p, e))?;
        }
        Ok(())
    }
}

fn ms_or_never(t: Option<u64>) -> Value {
    match t {
        Some(t) => json!(t),
        None => Value::Null,
    }
}

pub fn run_protocol(sc: &Scenario, seed: u64, threads: usize) -> Report {
    let mut e = Engine::new(sc, seed, threads);
    for x in &sc.expect {
        if let Expectation::FleetViewExact { by_ms } = x {
            e.checks_at.push(*by_ms);
        }
    }
    e.run();
    let n = sc.nodes as u64;
    let m = &e.m;
    let mut figures: Vec<(String, Value)> = Vec::new();
    let round = e.cfg().round_ms;
    figures.push(("round_ms".into(), json!(round)));
    figures.push(("zone_bits".into(), json!(e.cfg().zone_bits)));
    if e.cfg().group_bits > 0 {
        figures.push(("group_bits".into(), json!(e.cfg().group_bits)));
    }
    figures.push(("log2_n".into(), json!(round2((n as f64).log2()))));
    for (v, st) in &m.versions {
        let t50 = st.time_to((n as f64 * 0.5).ceil() as u64);
        let t99 = st.time_to((n as f64 * 0.99).ceil() as u64);
        let t100 = st.time_to(n);
        figures.push((format!("v{v}_ms_to_50pct"), ms_or_never(t50)));
        figures.push((format!("v{v}_ms_to_99pct"), ms_or_never(t99)));
        figures.push((format!("v{v}_ms_to_100pct"), ms_or_never(t100)));
        let all_accepted = (st.accepted >= n).then(|| st.last_accept_ms - st.published_at);
        figures.push((
            format!("v{v}_ms_to_all_accepted"),
            ms_or_never(all_accepted),
        ));
        figures.push((format!("v{v}_hops_99pct"), json!(st.hops_for(0.99))));
        figures.push((format!("v{v}_hops_max"), json!(st.max_hops())));
        figures.push((format!("v{v}_bundle_bytes"), json!(st.bundle_bytes)));
        figures.push((format!("v{v}_accepted"), json!(st.accepted)));
    }
    // Rollouts: waves, when each started and completed (ms after publish), who applied it,
    // who halted it and who sees the halt at the end.
    let channel = &sc.fleet.channel;
    let live = e.nodes().filter(|x| x.node.is_some()).count();
    let seen_halted = |v: u64| -> BTreeMap<u8, usize> {
        let mut by = BTreeMap::new();
        for x in e.nodes().filter_map(|x| x.node.as_ref()) {
            if let Some(r) = x.rollout(channel).filter(|r| r.version == v) {
                if let Some((w, _, _)) = r.halted {
                    *by.entry(w).or_default() += 1;
                }
            }
        }
        by
    };
    for (v, r) in &m.rollouts {
        let rel = |t: Option<u64>| ms_or_never(t.map(|t| t.saturating_sub(r.published_at)));
        let k = r.sizes.len();
        figures.push((format!("v{v}_rollout_waves"), json!(r.policy.waves)));
        figures.push((format!("v{v}_rollout_bake_s"), json!(r.policy.bake_secs)));
        figures.push((format!("v{v}_wave_nodes"), json!(r.sizes)));
        figures.push((
            format!("v{v}_wave_started_ms"),
            Value::Array((0..k).map(|w| rel(r.wave_started(w))).collect()),
        ));
        figures.push((
            format!("v{v}_wave_complete_ms"),
            Value::Array((0..k).map(|w| rel(r.wave_complete(w))).collect()),
        ));
        let ever = r.ever_applied_by_wave();
        figures.push((
            format!("v{v}_ever_applied"),
            json!(ever.iter().sum::<u64>()),
        ));
        figures.push((format!("v{v}_ever_applied_by_wave"), json!(ever)));
        figures.push((format!("v{v}_halts_by_wave"), json!(r.halts_by_wave())));
        let first = r.first_halt();
        figures.push((format!("v{v}_halt_first_ms"), rel(first.map(|(t, _)| t))));
        let last = r.halted.iter().flatten().map(|(t, _)| *t).max();
        figures.push((format!("v{v}_halt_last_ms"), rel(last)));
        let seen: usize = seen_halted(*v).values().sum();
        figures.push((format!("v{v}_halt_seen_by_live"), json!(seen)));
    }
    figures.push(("live_at_end".into(), json!(live)));
    let total_bundle: usize = m.versions.values().map(|v| v.bundle_bytes).sum();
    let (rx_mean, rx_max) = m.bundle_rx_per_node();
    let rx_factor = if total_bundle > 0 {
        rx_mean / total_bundle as f64
    } else {
        0.0
    };
    let rx_max_factor = if total_bundle > 0 {
        rx_max as f64 / total_bundle as f64
    } else {
        0.0
    };
    figures.push(("bundle_rx_per_node_x".into(), json!(round2(rx_factor))));
    figures.push(("bundle_rx_max_node_x".into(), json!(round2(rx_max_factor))));
    let first_pub = m
        .versions
        .values()
        .map(|v| v.published_at)
        .min()
        .unwrap_or(sc.duration_ms);
    let idle_from = (first_pub / 2).max(first_pub.saturating_sub(30_000));
    // Up to the sample before the publish: the sample that ends at the publish instant also
    // holds what the publisher sent then (its pushes: 5 bundles at 100 nodes are 80 B/node/s
    // over the window), which is not idle traffic.
    let idle = m.bytes_per_node_s(idle_from, first_pub.saturating_sub(1));
    figures.push(("idle_bytes_per_node_s".into(), json!(round2(idle))));
    // Steady state after the last release settled: the last 10 virtual seconds.
    let last_pub = m
        .versions
        .values()
        .map(|v| v.published_at)
        .max()
        .unwrap_or(0);
    let tail_from = sc.duration_ms.saturating_sub(10_000);
    if tail_from >= last_pub + 5_000 {
        let tail = m.bytes_per_node_s(tail_from, sc.duration_ms);
        figures.push(("steady_bytes_per_node_s".into(), json!(round2(tail))));
    }
    figures.push((
        "mean_bytes_per_node_s".into(),
        json!(round2(
            m.bytes_sent as f64 / n as f64 / (sc.duration_ms.max(1) as f64 / 1000.0)
        )),
    ));
    figures.push((
        "core_bytes_per_node_approx".into(),
        json!(e.approx_node_bytes()),
    ));
    figures.push((
        "distinct_signatures_checked".into(),
        json!(e.signatures_checked()),
    ));
    figures.push(("statuses_signed".into(), json!(e.statuses_signed())));
    figures.push(("crashes".into(), json!(m.crashes)));
    figures.push(("drift_events".into(), json!(m.drift_events)));
    figures.push(("untrusted_applied".into(), json!(m.untrusted_applied)));
    let refused: serde_json::Map<String, Value> = m
        .refused
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    figures.push(("refused".into(), Value::Object(refused)));
    let secs = sc.duration_ms.max(1) as f64 / 1000.0;
    let kinds: serde_json::Map<String, Value> = m
        .by_kind()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(round2(*v as f64 / n as f64 / secs))))
        .collect();
    figures.push(("bytes_per_node_s_by_kind".into(), Value::Object(kinds)));
    let counts: serde_json::Map<String, Value> = m
        .count_by_kind()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(round2(*v as f64 / n as f64 / secs))))
        .collect();
    figures.push(("messages_per_node_s_by_kind".into(), Value::Object(counts)));

    let mut checks = Vec::new();
    // Wave order is the safety property of every rollout: it is checked for each version
    // published with a rollout policy, whether or not the scenario lists it.
    // With liars in the fleet, the order that signed statuses and signed rows guarantee is
    // the one within each zone (the own zone's statuses), and the one across every zone
    // but the liars' (a liar may sign only its own zone's row; see `rollout-liar.toml`).
    let mut expect = sc.expect.clone();
    for v in m.rollouts.keys() {
        let orders = if sc.fleet.liars > 0 {
            vec![
                Expectation::WavesInOrderPerZone { version: *v },
                Expectation::WavesInOrderOutsideLiars { version: *v },
            ]
        } else {
            vec![Expectation::WavesInOrder { version: *v }]
        };
        for order in orders {
            if !expect.contains(&order) {
                expect.push(order);
            }
        }
    }
    // With groups, a liar may sign its group's row too: its whole group is the liars'.
    let group_shift = if e.cfg().group_bits > 0 {
        e.cfg().zone_bits - e.cfg().group_bits.min(e.cfg().zone_bits)
    } else {
        0
    };
    let liar_zones: Vec<u32> = e
        .liars()
        .iter()
        .map(|l| driftless_core::proto::fleet::zone_of(e.cfg().zone_bits, l) >> group_shift)
        .collect();
    for x in &expect {
        let (passed, detail) = match x {
            Expectation::ShareAt {
                percent,
                version,
                by_ms,
            } => {
                let need = (percent / 100.0 * n as f64).ceil() as u64;
                match m.versions.get(version) {
                    None => (false, format!("version {version} was never published")),
                    Some(st) => {
                        let t = st
                            .adoption
                            .iter()
                            .find(|(_, c)| *c >= need)
                            .map(|(t, _)| *t);
                        match t {
                            Some(t) => (
                                t <= *by_ms,
                                format!(
                                    "reached at {} ({} after publish)",
                                    fmt_ms(t),
                                    fmt_ms(t - st.published_at)
                                ),
                            ),
                            None => {
                                let best = st.adoption.last().map_or(0, |x| x.1);
                                (
                                    false,
                                    format!(
                                        "never reached; {:.2}% at the end",
                                        best as f64 * 100.0 / n as f64
                                    ),
                                )
                            }
                        }
                    }
                }
            }
            Expectation::NoUntrustedApplied => (
                m.untrusted_applied == 0,
                format!(
                    "{} applied, {} refused as untrusted",
                    m.untrusted_applied,
                    m.refused.get("untrusted").copied().unwrap_or(0)
                ),
            ),
            Expectation::BundleBytesAtMost { factor } => (
                rx_factor <= *factor,
                format!("{rx_factor:.3}x mean, {rx_max_factor:.2}x max"),
            ),
            Expectation::FleetViewExact { by_ms } => {
                match m.fleet_checks.iter().find(|c| c.0 == *by_ms) {
                    Some((_, ok, total)) => (
                        ok == total && *total > 0,
                        format!("{ok} of {total} sampled nodes exact"),
                    ),
                    None => (false, "not checked (after the end of the run?)".into()),
                }
            }
            Expectation::IdleBytesAtMost { bytes } => (
                idle <= *bytes,
                format!("{idle:.0} bytes per node per second"),
            ),
            Expectation::SyncLeastDrift => (false, "only in mode = \"models\"".into()),
            Expectation::RolloutHalted { version, wave } => match m.rollouts.get(version) {
                None => (false, not_a_rollout(*version)),
                Some(r) => {
                    let halts = r.halts_by_wave();
                    let total: u64 = halts.iter().sum();
                    let here = halts.get(*wave as usize).copied().unwrap_or(0);
                    let seen = seen_halted(*version);
                    let seen_here = seen.get(wave).copied().unwrap_or(0);
                    match r.first_halt() {
                        None => (
                            false,
                            format!(
                                "no node halted it; {} nodes ever applied it",
                                r.ever_applied_by_wave().iter().sum::<u64>()
                            ),
                        ),
                        Some((t, _)) => (
                            here == total && seen_here == live,
                            format!(
                                "first halt at {} ({} after publish); halts by wave {halts:?}; \
                                 {seen_here} of {live} live nodes see it halted in wave {wave} at the end",
                                fmt_ms(t),
                                fmt_ms(t - r.published_at)
                            ),
                        ),
                    }
                }
            },
            Expectation::RolloutPassed { version, by_ms } => match m.rollouts.get(version) {
                None => (false, not_a_rollout(*version)),
                Some(r) => {
                    let never = r.first_applied.iter().filter(|t| t.is_none()).count();
                    let last = r.first_applied.iter().flatten().max().copied();
                    let halts: u64 = r.halts_by_wave().iter().sum();
                    let done: Vec<String> = (0..r.sizes.len())
                        .map(|w| match (r.sizes[w], r.wave_complete(w)) {
                            (0, _) => "empty".to_string(),
                            (_, Some(t)) => format!("+{}", fmt_ms(t - r.published_at)),
                            (_, None) => "never".to_string(),
                        })
                        .collect();
                    let ok = never == 0 && halts == 0 && last.is_some_and(|t| t <= *by_ms);
                    let detail = if never > 0 {
                        format!("{never} nodes never applied it; waves complete: {done:?}")
                    } else if halts > 0 {
                        format!("{halts} nodes judged it halted; waves complete: {done:?}")
                    } else {
                        format!(
                            "waves complete after publish: {}; every node by {}",
                            done.join(", "),
                            fmt_ms(last.unwrap_or(0))
                        )
                    };
                    (ok, detail)
                }
            },
            Expectation::AtMostWaveApplied { wave, version } => match m.rollouts.get(version) {
                None => (false, not_a_rollout(*version)),
                Some(r) => {
                    let ever = r.ever_applied_by_wave();
                    let beyond: u64 = ever.iter().skip(*wave as usize + 1).sum();
                    (
                        beyond == 0,
                        format!(
                            "{} nodes ever applied it, by wave {ever:?} (waves of {:?} nodes)",
                            ever.iter().sum::<u64>(),
                            r.sizes
                        ),
                    )
                }
            },
            Expectation::WavesInOrder { version }
            | Expectation::WavesInOrderPerZone { version }
            | Expectation::WavesInOrderOutsideLiars { version } => match m.rollouts.get(version) {
                None => (false, not_a_rollout(*version)),
                Some(r) => {
                    let bad: Vec<String> = if matches!(x, Expectation::WavesInOrderPerZone { .. }) {
                        let mut zones: Vec<u32> = r.zone.clone();
                        zones.sort_unstable();
                        zones.dedup();
                        zones
                            .iter()
                            .flat_map(|z| {
                                r.order_violations(&|i| r.zone[i] == *z)
                                    .into_iter()
                                    .map(move |v| format!("zone {z}: {v}"))
                            })
                            .collect()
                    } else if matches!(x, Expectation::WavesInOrderOutsideLiars { .. }) {
                        r.order_violations(&|i| !liar_zones.contains(&(r.zone[i] >> group_shift)))
                    } else {
                        r.order_violations(&|_| true)
                    };
                    let started: Vec<Value> = (0..r.sizes.len())
                        .map(|w| ms_or_never(r.wave_started(w).map(|t| t - r.published_at)))
                        .collect();
                    if bad.is_empty() {
                        (
                            true,
                            format!(
                                "waves started (ms after publish): {}",
                                Value::Array(started)
                            ),
                        )
                    } else {
                        (false, bad.join("; "))
                    }
                }
            },
            Expectation::WaveNotBefore {
                wave,
                version,
                before_ms,
            } => match m.rollouts.get(version) {
                None => (false, not_a_rollout(*version)),
                Some(r) if *wave as usize >= r.sizes.len() => (
                    false,
                    format!("the rollout has only {} waves", r.sizes.len()),
                ),
                Some(r) => match r.wave_started(*wave as usize) {
                    None => (true, "no node of the wave ever applied it".into()),
                    Some(t) => (
                        t >= *before_ms,
                        format!("its first node applied it at {}", fmt_ms(t)),
                    ),
                },
            },
            Expectation::BackAt {
                percent,
                version,
                by_ms,
            } => {
                let need = (percent / 100.0 * n as f64).ceil() as u64;
                let left = m
                    .versions
                    .range(version + 1..)
                    .next()
                    .and_then(|(_, st)| st.adoption.iter().find(|(_, c)| *c > 0))
                    .map(|(t, _)| *t);
                match (m.versions.get(version), left) {
                    (None, _) => (false, format!("version {version} was never published")),
                    (_, None) => (false, format!("no node ever ran a version after {version}")),
                    (Some(st), Some(t0)) => {
                        match st.exact.iter().find(|(t, c)| *t >= t0 && *c >= need) {
                            Some((t, _)) => (
                                *t <= *by_ms,
                                format!(
                                    "the first node left it at {}; back at {}",
                                    fmt_ms(t0),
                                    fmt_ms(*t)
                                ),
                            ),
                            None => {
                                let end = st.exact.last().map_or(0, |x| x.1);
                                (
                                    false,
                                    format!(
                                        "never back; {:.2}% run it at the end",
                                        end as f64 * 100.0 / n as f64
                                    ),
                                )
                            }
                        }
                    }
                }
            }
        };
        checks.push(Check {
            expectation: x.text(),
            passed,
            detail,
        });
    }
    Report {
        scenario: sc.name.clone(),
        file: sc.file.display().to_string(),
        about: sc.about.clone(),
        seed,
        nodes: sc.nodes,
        duration_ms: sc.duration_ms,
        checks,
        figures,
        rows: m.rows.clone(),
        waves: m
            .rollouts
            .iter()
            .map(|(v, r)| (*v, r.sizes.clone()))
            .collect(),
        drift_series: vec![(
            "drifted resources outstanding".into(),
            m.rows
                .iter()
                .map(|r| (r.t_ms, r.drift_open as f64))
                .collect(),
        )],
        wall_ms: 0,
    }
}

fn not_a_rollout(version: u64) -> String {
    format!("version {version} was never published with a rollout policy")
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
