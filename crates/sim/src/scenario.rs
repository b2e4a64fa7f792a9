//! Scenario files: fleet, network, timeline and expectations, parsed with errors that name
//! the file, the field and the line.

use crate::Error;
use driftless_core::definition::{OnFailure, RolloutPolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A parsed scenario. Times are virtual milliseconds.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: PathBuf,
    pub name: String,
    /// The comment block at the top of the file: what the scenario shows.
    pub about: String,
    pub nodes: usize,
    pub duration_ms: u64,
    pub seed: u64,
    pub mode: Mode,
    pub network: Network,
    pub fleet: Fleet,
    pub protocol: Protocol,
    pub timeline: Vec<Step>,
    pub expect: Vec<Expectation>,
    /// Run by the CI test even when it has many nodes.
    pub ci: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The protocol core on a virtual network.
    Protocol,
    /// The essay's update models compared by the drift they leave.
    Models,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub loss: f64,
    /// Link bandwidth: a message of B bytes takes B*8/bandwidth longer.
    pub bandwidth_mbps: f64,
}

#[derive(Debug, Clone)]
pub struct Fleet {
    pub channel: String,
    /// Bundle size: the definition is padded to about this many bytes.
    pub bundle_bytes: usize,
    pub apply_min_ms: u64,
    pub apply_max_ms: u64,
    pub apply_failure: f64,
    /// Drift events per node per hour (a managed file changed by hand).
    pub drift_per_node_hour: f64,
    /// How long until a watched drift is undone.
    pub drift_fix_ms: u64,
    /// Re-apply interval (configuration synchronization); models mode uses it too.
    pub reapply_ms: Option<u64>,
    /// Models mode: a release every this long.
    pub release_every_ms: u64,
    /// Models mode, ad hoc: share of servers someone applies a release to by hand.
    pub adhoc_share: f64,
    /// Admitted but compromised nodes (the leader of zone 0, then of zone 1, ...): each lies
    /// in every zone row it sends and signs statuses that claim it is sick on the newest
    /// version (`engine.rs`, `Engine::lie`).
    pub liars: usize,
    /// What the liars' own zone's row says (`liar_mode`).
    pub liar_mode: LiarMode,
}

/// What a liar signs as its own zone's row (`[fleet] liar_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LiarMode {
    /// `"advance"`: its table's member count, one node of it on the newest version in the
    /// last wave, so that earlier waves of its zone look empty, hence done.
    #[default]
    Advance,
    /// `"stall"`: its table's member count, every one of them on the previous version in
    /// wave 0, so that wave 0 never looks done outside its zone.
    Stall,
    /// `"stall-inflated"`: as `stall`, with four times its table's member count.
    StallInflated,
}

#[derive(Debug, Clone, Default)]
pub struct Protocol {
    pub round_ms: Option<u64>,
    pub active_size: Option<usize>,
    pub peer_timeout_ms: Option<u64>,
    pub zone_bits: Option<u8>,
    /// Groups of zones (`Config::group_bits`); by default `Config::group_bits_for(N)`, or
    /// none when `zone_bits` is set.
    pub group_bits: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The release host hands version V to one node. `unhealthy`: the share of the nodes
    /// that turn unhealthy once they apply it (healthy again when they leave it); `rollout`:
    /// the policy carried in the bundle.
    Publish {
        version: u64,
        unhealthy: f64,
        rollout: Option<RolloutPolicy>,
    },
    /// A rogue node publishes version V signed by an untrusted key.
    Rogue { version: u64 },
    /// A share of the nodes is cut off from the rest until `heal_ms`.
    Partition { share: f64, heal_ms: u64 },
    /// A share of the nodes crashes (losing all but persisted state), back after `down_ms`.
    /// With `wave`, the share is of the nodes in that wave of the newest rollout published
    /// (at least one node).
    Crash {
        share: f64,
        down_ms: u64,
        wave: Option<u8>,
    },
    /// From now on, `rate` of the nodes per second crash and come back after `down_ms`.
    Churn {
        rate: f64,
        down_ms: u64,
        until_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at_ms: u64,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// "99% at version 2 by 3s"
    ShareAt {
        percent: f64,
        version: u64,
        by_ms: u64,
    },
    /// "no node ever applied an untrusted bundle"
    NoUntrustedApplied,
    /// "bundle bytes per node at most 1.2x"
    BundleBytesAtMost { factor: f64 },
    /// "fleet view exact by 30s": every sampled node's counts equal the truth.
    FleetViewExact { by_ms: u64 },
    /// "idle bytes per node per second at most 2000"
    IdleBytesAtMost { bytes: f64 },
    /// "configuration synchronization leaves the least drift" (models mode)
    SyncLeastDrift,
    /// "rollout of version 3 halted in wave 0": every node that halted it halted in wave K,
    /// and every live node sees the halt at the end.
    RolloutHalted { version: u64, wave: u8 },
    /// "rollout of version 3 passed every wave by 60s": every node applied V by T, wave by
    /// wave, and no node halted it.
    RolloutPassed { version: u64, by_ms: u64 },
    /// "at most wave 0 ever applied version 3" (also: "no node of wave 1 or later applied
    /// version 3").
    AtMostWaveApplied { wave: u8, version: u64 },
    /// "waves of version 3 started in order after each bake": no node of wave k applied V
    /// before every node of the earlier waves had, plus the bake time.
    WavesInOrder { version: u64 },
    /// "waves of version 3 started in order after each bake in every zone": the same, among
    /// the nodes of each zone of the fleet view (what the own zone's signed statuses vouch
    /// for, whatever the summaries of other zones say).
    WavesInOrderPerZone { version: u64 },
    /// "waves of version 3 started in order after each bake outside the liars' zones": the
    /// fleet-wide order among the nodes of every zone that holds no liar. A liar can
    /// misstate its own zone's row (it is a member: it may sign it), never another zone's
    /// (rows are signed by a member of the zone they describe), so the waves of all the
    /// other zones keep their order across zones, even in a zone with no member of the
    /// previous wave, which judges that wave on rows alone.
    WavesInOrderOutsideLiars { version: u64 },
    /// "no node of wave 2 applied version 3 before 25s"
    WaveNotBefore {
        wave: u8,
        version: u64,
        before_ms: u64,
    },
    /// "100% back at version 2 by 40s": after some node ran a newer version, P% of the nodes
    /// run exactly V again by T.
    BackAt {
        percent: f64,
        version: u64,
        by_ms: u64,
    },
}

impl Expectation {
    pub fn text(&self) -> String {
        match self {
            Expectation::ShareAt {
                percent,
                version,
                by_ms,
            } => format!("{percent}% at version {version} by {}", fmt_ms(*by_ms)),
            Expectation::NoUntrustedApplied => "no node ever applied an untrusted bundle".into(),
            Expectation::BundleBytesAtMost { factor } => {
                format!("bundle bytes per node at most {factor}x")
            }
            Expectation::FleetViewExact { by_ms } => {
                format!("fleet view exact by {}", fmt_ms(*by_ms))
            }
            Expectation::IdleBytesAtMost { bytes } => {
                format!("idle bytes per node per second at most {bytes}")
            }
            Expectation::SyncLeastDrift => {
                "configuration synchronization leaves the least drift".into()
            }
            Expectation::RolloutHalted { version, wave } => {
                format!("rollout of version {version} halted in wave {wave}")
            }
            Expectation::RolloutPassed { version, by_ms } => format!(
                "rollout of version {version} passed every wave by {}",
                fmt_ms(*by_ms)
            ),
            Expectation::AtMostWaveApplied { wave, version } => {
                format!("at most wave {wave} ever applied version {version}")
            }
            Expectation::WavesInOrder { version } => {
                format!("waves of version {version} started in order after each bake")
            }
            Expectation::WavesInOrderPerZone { version } => {
                format!("waves of version {version} started in order after each bake in every zone")
            }
            Expectation::WavesInOrderOutsideLiars { version } => format!(
                "waves of version {version} started in order after each bake outside the liars' zones"
            ),
            Expectation::WaveNotBefore {
                wave,
                version,
                before_ms,
            } => format!(
                "no node of wave {wave} applied version {version} before {}",
                fmt_ms(*before_ms)
            ),
            Expectation::BackAt {
                percent,
                version,
                by_ms,
            } => format!("{percent}% back at version {version} by {}", fmt_ms(*by_ms)),
        }
    }
}

pub fn fmt_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}ms", ms)
    }
}

// ----- the file format -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    nodes: usize,
    duration: String,
    seed: Option<u64>,
    mode: Option<String>,
    ci: Option<bool>,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    protocol: RawProtocol,
    #[serde(default)]
    timeline: Vec<RawStep>,
    #[serde(default)]
    expect: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency: Option<String>,
    loss: Option<f64>,
    bandwidth_mbps: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    channel: Option<String>,
    bundle_bytes: Option<usize>,
    apply: Option<String>,
    apply_failure: Option<f64>,
    drift_per_node_hour: Option<f64>,
    drift_fix: Option<String>,
    reapply: Option<String>,
    release_every: Option<String>,
    adhoc_share: Option<f64>,
    liars: Option<usize>,
    liar_mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    round: Option<String>,
    active_size: Option<usize>,
    peer_timeout: Option<String>,
    zone_bits: Option<u8>,
    group_bits: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: String,
    publish: Option<u64>,
    unhealthy: Option<f64>,
    rollout: Option<RawRollout>,
    wave: Option<u8>,
    rogue: Option<u64>,
    partition: Option<f64>,
    heal: Option<String>,
    crash: Option<f64>,
    churn: Option<f64>,
    down: Option<String>,
    until: Option<String>,
}

/// `rollout = { waves = [0.01, 0.1, 0.5, 1.0], bake = "30s", max_unhealthy = 0.05,
/// on_failure = "rollback" }`, as in a definition's `[rollout]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    waves: Vec<f64>,
    bake: Option<String>,
    max_unhealthy: Option<f64>,
    on_failure: Option<String>,
}

/// "3s", "250ms", "2m", "1h", "1.5s".
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else if let Some(n) = t.strip_suffix('d') {
        (n, 86_400_000.0)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    (v >= 0.0 && v.is_finite()).then(|| (v * mult).round() as u64)
}

fn range(text: &str) -> Option<(u64, u64)> {
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse_duration(a)?, parse_duration(b)?);
            (a <= b).then_some((a, b))
        }
        None => parse_duration(text).map(|v| (v, v)),
    }
}

/// The 1-based line of the first line in `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Scenario::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Scenario, Error> {
        let bad = |field: &str, message: String| Error::Invalid {
            file: path.to_path_buf(),
            field: field.to_string(),
            line: line_of(text, field.split(['.', '[']).next_back().unwrap_or(field)),
            message,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            Error::Invalid {
                file: path.to_path_buf(),
                field: "(file)".into(),
                line,
                message: e.message().to_string(),
            }
        })?;
        if raw.nodes == 0 {
            return Err(bad("nodes", "expected at least 1 node".into()));
        }
        let duration_ms = parse_duration(&raw.duration).ok_or_else(|| {
            bad(
                "duration",
                format!("expected a duration like 60s, got `{}`", raw.duration),
            )
        })?;
        let mode = match raw.mode.as_deref() {
            None | Some("protocol") => Mode::Protocol,
            Some("models") => Mode::Models,
            Some(other) => {
                return Err(bad(
                    "mode",
                    format!("expected `protocol` or `models`, got `{other}`"),
                ))
            }
        };
        let (lmin, lmax) = range(raw.network.latency.as_deref().unwrap_or("10ms..50ms"))
            .ok_or_else(|| bad("latency", "expected a range like 10ms..50ms".into()))?;
        let loss = raw.network.loss.unwrap_or(0.0);
        if !(0.0..1.0).contains(&loss) {
            return Err(bad("loss", format!("expected 0 <= loss < 1, got {loss}")));
        }
        let bw = raw.network.bandwidth_mbps.unwrap_or(1000.0);
        if bw <= 0.0 || !bw.is_finite() {
            return Err(bad("bandwidth_mbps", "expected a positive number".into()));
        }
        let f = raw.fleet;
        let (amin, amax) = range(f.apply.as_deref().unwrap_or("100ms..500ms"))
            .ok_or_else(|| bad("apply", "expected a range like 100ms..500ms".into()))?;
        let dur = |field: &str, v: &Option<String>, default: u64| -> Result<u64, Error> {
            match v {
                None => Ok(default),
                Some(t) => parse_duration(t)
                    .ok_or_else(|| bad(field, format!("expected a duration, got `{t}`"))),
            }
        };
        let share = |field: &str, v: f64| -> Result<f64, Error> {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(bad(
                    field,
                    format!("expected a share between 0 and 1, got {v}"),
                ))
            }
        };
        let fleet = Fleet {
            channel: f.channel.unwrap_or_else(|| "web".into()),
            bundle_bytes: f.bundle_bytes.unwrap_or(16 * 1024),
            apply_min_ms: amin,
            apply_max_ms: amax,
            apply_failure: share("apply_failure", f.apply_failure.unwrap_or(0.0))?,
            drift_per_node_hour: f.drift_per_node_hour.unwrap_or(0.0),
            drift_fix_ms: dur("drift_fix", &f.drift_fix, 50)?,
            reapply_ms: match &f.reapply {
                None => None,
                Some(_) => Some(dur("reapply", &f.reapply, 0)?),
            },
            release_every_ms: dur("release_every", &f.release_every, 7 * 86_400_000)?,
            adhoc_share: share("adhoc_share", f.adhoc_share.unwrap_or(0.5))?,
            liars: f.liars.unwrap_or(0),
            liar_mode: match f.liar_mode.as_deref() {
                None | Some("advance") => LiarMode::Advance,
                Some("stall") => LiarMode::Stall,
                Some("stall-inflated") => LiarMode::StallInflated,
                Some(other) => {
                    return Err(bad(
                        "liar_mode",
                        format!("expected `advance`, `stall` or `stall-inflated`, got `{other}`"),
                    ))
                }
            },
        };
        let protocol = Protocol {
            round_ms: match &raw.protocol.round {
                None => None,
                Some(_) => Some(dur("round", &raw.protocol.round, 0)?.max(1)),
            },
            active_size: raw.protocol.active_size,
            peer_timeout_ms: match &raw.protocol.peer_timeout {
                None => None,
                Some(_) => Some(dur("peer_timeout", &raw.protocol.peer_timeout, 0)?),
            },
            zone_bits: raw.protocol.zone_bits,
            group_bits: raw.protocol.group_bits,
        };
        let mut timeline = Vec::new();
        for (i, s) in raw.timeline.iter().enumerate() {
            let field = format!("timeline[{i}]");
            let at_ms = parse_duration(&s.at).ok_or_else(|| {
                bad(
                    &format!("{field}.at"),
                    format!("expected a duration, got `{}`", s.at),
                )
            })?;
            let down_ms = dur(&format!("{field}.down"), &s.down, 10_000)?;
            let n_actions = [
                s.publish.is_some(),
                s.rogue.is_some(),
                s.partition.is_some(),
                s.crash.is_some(),
                s.churn.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n_actions != 1 {
                return Err(bad(
                    &field,
                    "expected exactly one of publish, rogue, partition, crash, churn".into(),
                ));
            }
            if s.publish.is_none() && (s.unhealthy.is_some() || s.rollout.is_some()) {
                let f = if s.rollout.is_some() {
                    "rollout"
                } else {
                    "unhealthy"
                };
                return Err(bad(
                    &format!("{field}.{f}"),
                    "only a `publish` step takes it".into(),
                ));
            }
            if s.wave.is_some() && s.crash.is_none() {
                return Err(bad(
                    &format!("{field}.wave"),
                    "only a `crash` step takes it".into(),
                ));
            }
            let action = if let Some(version) = s.publish {
                let rollout = match &s.rollout {
                    None => None,
                    Some(r) => Some(
                        rollout_policy(r)
                            .map_err(|(f, m)| bad(&format!("{field}.rollout.{f}"), m))?,
                    ),
                };
                Action::Publish {
                    version,
                    unhealthy: share(&format!("{field}.unhealthy"), s.unhealthy.unwrap_or(0.0))?,
                    rollout,
                }
            } else if let Some(version) = s.rogue {
                Action::Rogue { version }
            } else if let Some(p) = s.partition {
                let heal_ms = dur(&format!("{field}.heal"), &s.heal, u64::MAX)?;
                if heal_ms <= at_ms {
                    return Err(bad(
                        &format!("{field}.heal"),
                        "expected a time after `at`".into(),
                    ));
                }
                Action::Partition {
                    share: share(&format!("{field}.partition"), p)?,
                    heal_ms,
                }
            } else if let Some(c) = s.crash {
                Action::Crash {
                    share: share(&format!("{field}.crash"), c)?,
                    down_ms,
                    wave: s.wave,
                }
            } else {
                Action::Churn {
                    rate: share(&format!("{field}.churn"), s.churn.unwrap_or(0.0))?,
                    down_ms,
                    until_ms: dur(&format!("{field}.until"), &s.until, u64::MAX)?,
                }
            };
            timeline.push(Step { at_ms, action });
        }
        timeline.sort_by_key(|s| s.at_ms);
        let mut expect = Vec::new();
        for (i, e) in raw.expect.iter().enumerate() {
            let ex = parse_expectation(e).map_err(|m| Error::Invalid {
                file: path.to_path_buf(),
                field: format!("expect[{i}]"),
                line: line_of(text, e),
                message: m,
            })?;
            expect.push(ex);
        }
        let about = text
            .lines()
            .take_while(|l| l.starts_with('#') || l.trim().is_empty())
            .filter_map(|l| l.strip_prefix('#'))
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_string();
        let name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into())
        });
        Ok(Scenario {
            file: path.to_path_buf(),
            name,
            about,
            nodes: raw.nodes,
            duration_ms,
            seed: raw.seed.unwrap_or(1),
            mode,
            network: Network {
                latency_min_ms: lmin,
                latency_max_ms: lmax,
                loss,
                bandwidth_mbps: bw,
            },
            fleet,
            protocol,
            timeline,
            expect,
            ci: raw.ci,
        })
    }
}

/// The policy of a `rollout = { ... }` table, checked as `sign` checks a definition's
/// `[rollout]`: (field, message) on error.
fn rollout_policy(r: &RawRollout) -> Result<RolloutPolicy, (&'static str, String)> {
    let w = &r.waves;
    let ok = !w.is_empty()
        && w.len() <= 16
        && w.iter().all(|x| *x > 0.0 && *x <= 1.0)
        && w.windows(2).all(|p| p[0] < p[1])
        && w.last() == Some(&1.0);
    if !ok {
        return Err((
            "waves",
            format!("expected at most 16 strictly increasing fractions in (0, 1], ending with 1.0, got {w:?}"),
        ));
    }
    let bake_ms = match &r.bake {
        None => 0,
        Some(t) => parse_duration(t)
            .ok_or_else(|| ("bake", format!("expected a duration like 30s, got `{t}`")))?,
    };
    if !bake_ms.is_multiple_of(1000) {
        return Err((
            "bake",
            format!("expected whole seconds (bundles carry seconds), got {bake_ms} ms"),
        ));
    }
    let max_unhealthy = r.max_unhealthy.unwrap_or(0.05);
    if !(0.0..=1.0).contains(&max_unhealthy) {
        return Err((
            "max_unhealthy",
            format!("expected a share between 0 and 1, got {max_unhealthy}"),
        ));
    }
    let on_failure = match r.on_failure.as_deref() {
        None | Some("rollback") => OnFailure::Rollback,
        Some("halt") => OnFailure::Halt,
        Some(other) => {
            return Err((
                "on_failure",
                format!("expected `halt` or `rollback`, got `{other}`"),
            ))
        }
    };
    Ok(RolloutPolicy {
        waves: w.clone(),
        bake_secs: bake_ms / 1000,
        max_unhealthy,
        on_failure,
    })
}

fn parse_expectation(text: &str) -> Result<Expectation, String> {
    let t = text.trim().to_lowercase();
    let words: Vec<&str> = t.split_whitespace().collect();
    let expected = "expected one of: `P% at version V by T`, `no node ever applied an untrusted bundle`, \
`bundle bytes per node at most Fx`, `fleet view exact by T`, `idle bytes per node per second at most B`, \
`configuration synchronization leaves the least drift`, `rollout of version V halted in wave K`, \
`rollout of version V passed every wave by T`, `at most wave K ever applied version V`, \
`no node of wave K or later applied version V`, `no node of wave K applied version V before T`, `waves of version V started in order after each bake [in every zone | outside the liars' zones]`, \
`P% back at version V by T`";
    let num = |w: &str, what: &str| -> Result<u64, String> {
        w.parse().map_err(|_| format!("`{w}` is not a {what}"))
    };
    let wave = |w: &str| -> Result<u8, String> {
        w.parse()
            .map_err(|_| format!("`{w}` is not a wave number (0, 1, ...)"))
    };
    let by = |w: &str| parse_duration(w).ok_or_else(|| format!("`{w}` is not a duration"));
    match words.as_slice() {
        [p, "at", "version", v, "by", by] if p.ends_with('%') => {
            let percent: f64 = p
                .trim_end_matches('%')
                .parse()
                .map_err(|_| format!("`{p}` is not a percentage"))?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!("`{p}` is not between 0% and 100%"));
            }
            let version = v
                .parse()
                .map_err(|_| format!("`{v}` is not a version number"))?;
            let by_ms = parse_duration(by).ok_or_else(|| format!("`{by}` is not a duration"))?;
            Ok(Expectation::ShareAt {
                percent,
                version,
                by_ms,
            })
        }
        ["no", "node", "ever", "applied", "an", "untrusted", "bundle"] => {
            Ok(Expectation::NoUntrustedApplied)
        }
        ["bundle", "bytes", "per", "node", "at", "most", f] => {
            let factor = f
                .trim_end_matches('x')
                .parse()
                .map_err(|_| format!("`{f}` is not a factor like 1.2x"))?;
            Ok(Expectation::BundleBytesAtMost { factor })
        }
        ["fleet", "view", "exact", "by", by] => Ok(Expectation::FleetViewExact {
            by_ms: parse_duration(by).ok_or_else(|| format!("`{by}` is not a duration"))?,
        }),
        ["idle", "bytes", "per", "node", "per", "second", "at", "most", b] => {
            Ok(Expectation::IdleBytesAtMost {
                bytes: b.parse().map_err(|_| format!("`{b}` is not a number"))?,
            })
        }
        ["configuration", "synchronization", "leaves", "the", "least", "drift"] => {
            Ok(Expectation::SyncLeastDrift)
        }
        ["rollout", "of", "version", v, "halted", "in", "wave", k] => {
            Ok(Expectation::RolloutHalted {
                version: num(v, "version number")?,
                wave: wave(k)?,
            })
        }
        ["rollout", "of", "version", v, "passed", "every", "wave", "by", t] => {
            Ok(Expectation::RolloutPassed {
                version: num(v, "version number")?,
                by_ms: by(t)?,
            })
        }
        ["at", "most", "wave", k, "ever", "applied", "version", v] => {
            Ok(Expectation::AtMostWaveApplied {
                wave: wave(k)?,
                version: num(v, "version number")?,
            })
        }
        ["no", "node", "of", "wave", k, "or", "later", "applied", "version", v] => {
            let k = wave(k)?;
            if k == 0 {
                return Err("`no node of wave 0 or later` means no node at all: \
                            say `at most wave ...`, or expect the version never applied"
                    .into());
            }
            Ok(Expectation::AtMostWaveApplied {
                wave: k - 1,
                version: num(v, "version number")?,
            })
        }
        ["no", "node", "of", "wave", k, "applied", "version", v, "before", t] => {
            Ok(Expectation::WaveNotBefore {
                wave: wave(k)?,
                version: num(v, "version number")?,
                before_ms: by(t)?,
            })
        }
        ["waves", "of", "version", v, "started", "in", "order", "after", "each", "bake"] => {
            Ok(Expectation::WavesInOrder {
                version: num(v, "version number")?,
            })
        }
        ["waves", "of", "version", v, "started", "in", "order", "after", "each", "bake", "in", "every", "zone"] => {
            Ok(Expectation::WavesInOrderPerZone {
                version: num(v, "version number")?,
            })
        }
        ["waves", "of", "version", v, "started", "in", "order", "after", "each", "bake", "outside", "the", "liars'", "zones"] => {
            Ok(Expectation::WavesInOrderOutsideLiars {
                version: num(v, "version number")?,
            })
        }
        [p, "back", "at", "version", v, "by", t] if p.ends_with('%') => {
            let percent: f64 = p
                .trim_end_matches('%')
                .parse()
                .map_err(|_| format!("`{p}` is not a percentage"))?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!("`{p}` is not between 0% and 100%"));
            }
            Ok(Expectation::BackAt {
                percent,
                version: num(v, "version number")?,
                by_ms: by(t)?,
            })
        }
        _ => Err(format!("cannot read `{text}`: {expected}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_expectations_parse() {
        assert_eq!(parse_duration("3s"), Some(3000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("1.5s"), Some(1500));
        assert_eq!(parse_duration("2m"), Some(120_000));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(
            parse_expectation("99% at version 2 by 3s"),
            Ok(Expectation::ShareAt {
                percent: 99.0,
                version: 2,
                by_ms: 3000
            })
        );
        assert!(parse_expectation("most nodes happy").is_err());
    }

    #[test]
    fn a_release_carries_its_rollout_policy_and_rollout_expectations_parse() {
        let text = "nodes = 10\nduration = \"10s\"\n\
                    expect = [\"rollout of version 3 halted in wave 0\", \"no node of wave 1 or later applied version 3\"]\n\
                    [[timeline]]\nat = \"2s\"\npublish = 3\nunhealthy = 0.3\n\
                    rollout = { waves = [0.1, 0.5, 1.0], bake = \"5s\", on_failure = \"halt\" }\n";
        let sc = Scenario::parse(Path::new("s.toml"), text).unwrap();
        assert_eq!(
            sc.timeline[0].action,
            Action::Publish {
                version: 3,
                unhealthy: 0.3,
                rollout: Some(RolloutPolicy {
                    waves: vec![0.1, 0.5, 1.0],
                    bake_secs: 5,
                    max_unhealthy: 0.05,
                    on_failure: OnFailure::Halt,
                }),
            }
        );
        assert_eq!(
            sc.expect,
            vec![
                Expectation::RolloutHalted {
                    version: 3,
                    wave: 0
                },
                Expectation::AtMostWaveApplied {
                    wave: 0,
                    version: 3
                },
            ]
        );
        for (e, want) in [
            (
                "rollout of version 3 passed every wave by 40s",
                Expectation::RolloutPassed {
                    version: 3,
                    by_ms: 40_000,
                },
            ),
            (
                "at most wave 1 ever applied version 4",
                Expectation::AtMostWaveApplied {
                    wave: 1,
                    version: 4,
                },
            ),
            (
                "waves of version 3 started in order after each bake",
                Expectation::WavesInOrder { version: 3 },
            ),
            (
                "no node of wave 2 applied version 3 before 25s",
                Expectation::WaveNotBefore {
                    wave: 2,
                    version: 3,
                    before_ms: 25_000,
                },
            ),
            (
                "100% back at version 2 by 20s",
                Expectation::BackAt {
                    percent: 100.0,
                    version: 2,
                    by_ms: 20_000,
                },
            ),
        ] {
            assert_eq!(parse_expectation(e), Ok(want.clone()), "{e}");
            assert_eq!(parse_expectation(&want.text()), Ok(want), "{e}");
        }
        assert!(parse_expectation("rollout of version 3 halted in wave one").is_err());
        // A bad policy is named down to its field.
        let text = "nodes = 10\nduration = \"10s\"\n[[timeline]]\nat = \"2s\"\npublish = 3\n\
                    rollout = { waves = [0.5, 0.2, 1.0] }\n";
        let msg = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("s.toml")
                && msg.contains("timeline[0].rollout.waves")
                && msg.contains("line 6"),
            "{msg}"
        );
        let text = "nodes = 10\nduration = \"10s\"\n[[timeline]]\nat = \"2s\"\npublish = 3\n\
                    rollout = { waves = [1.0], bake = \"1.5s\" }\n";
        let msg = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("timeline[0].rollout.bake"), "{msg}");
        let text = "nodes = 10\nduration = \"10s\"\n[[timeline]]\nat = \"2s\"\ncrash = 0.1\n\
                    rollout = { waves = [1.0] }\n";
        let msg = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("timeline[0].rollout"), "{msg}");
    }

    #[test]
    fn a_bad_field_is_named_with_its_line() {
        let text = "nodes = 10\nduration = \"10s\"\n[network]\nloss = 1.5\n";
        let err = Scenario::parse(Path::new("s.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("s.toml") && msg.contains("loss") && msg.contains("line 4"),
            "{msg}"
        );
        assert!(err.is_bad_input());
        let text = "nodes = 10\nduration = \"10s\"\nexpect = [\"half the fleet\"]\n";
        let msg = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("expect[0]") && msg.contains("line 3"), "{msg}");
        let text = "nodes = 10\nduration = \"10s\"\nbogus = 1\n";
        let msg = Scenario::parse(Path::new("s.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("bogus") && msg.contains("line 3"), "{msg}");
    }
}
