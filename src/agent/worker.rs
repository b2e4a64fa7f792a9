//! Convergence off the network's thread: applies run on blocking threads, one at a time per
//! channel (a newer request waits and replaces an older waiting one), and drift is counted.
//! Also the drift watch: one inotify instance, one watch per directory holding managed paths.

use crate::converge::{self, Outcome, Report};
use crate::facts::Facts;
use driftless_core::definition::ResourceKind;
use driftless_core::VerifiedBundle;
use notify::{RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A new version the core asked for.
    NewVersion,
    /// The periodic re-apply, a restart, or a watched file changed: differences are drift.
    Recheck,
}

pub struct Done {
    pub channel: String,
    pub version: u64,
    pub why: Why,
    pub report: Report,
    pub elapsed: std::time::Duration,
    pub bundle: Arc<VerifiedBundle>,
}

#[derive(Default)]
struct Lane {
    /// The bundle being applied now, if any.
    running: Option<Arc<VerifiedBundle>>,
    waiting: Option<(Arc<VerifiedBundle>, Why)>,
}

pub struct Worker {
    root: PathBuf,
    facts: Facts,
    lanes: BTreeMap<String, Lane>,
    done_tx: mpsc::UnboundedSender<Done>,
}

impl Worker {
    /// New labels (from a new node certificate): templates see them from the next apply.
    pub fn set_labels(&mut self, labels: driftless_core::Labels) {
        self.facts.labels = labels;
    }

    pub fn new(root: PathBuf, facts: Facts, done_tx: mpsc::UnboundedSender<Done>) -> Worker {
        Worker {
            root,
            facts,
            lanes: BTreeMap::new(),
            done_tx,
        }
    }

    /// Converge `bundle` now, or after the running apply of its channel.
    pub fn request(&mut self, bundle: Arc<VerifiedBundle>, why: Why) {
        let channel = bundle.header().channel.clone();
        let lane = self.lanes.entry(channel).or_default();
        if let Some(running) = &lane.running {
            // A recheck asked for while a newer version is being applied (the watch sees
            // that apply's own writes before it reports back) must check against the newer
            // version: re-applying the older bundle would undo it and count drift.
            let bundle =
                if why == Why::Recheck && running.header().version > bundle.header().version {
                    running.clone()
                } else {
                    bundle
                };
            // A new version wins over a recheck; otherwise the latest request wins.
            let keep_new =
                matches!(lane.waiting, Some((_, Why::NewVersion))) && why == Why::Recheck;
            if !keep_new {
                lane.waiting = Some((bundle, why));
            }
            return;
        }
        lane.running = Some(bundle.clone());
        self.spawn(bundle, why);
    }

    /// An apply finished: start the one waiting on this channel, if any.
    pub fn finished(&mut self, channel: &str) {
        let Some(lane) = self.lanes.get_mut(channel) else {
            return;
        };
        match lane.waiting.take() {
            Some((b, why)) => {
                lane.running = Some(b.clone());
                self.spawn(b, why)
            }
            None => lane.running = None,
        }
    }

    fn spawn(&self, bundle: Arc<VerifiedBundle>, why: Why) {
        let tx = self.done_tx.clone();
        let opts = converge::Options {
            root: self.root.clone(),
            dry_run: false,
        };
        let facts = self.facts.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let report = converge::run(bundle.definition(), &facts, &opts);
            let _ = tx.send(Done {
                channel: bundle.header().channel.clone(),
                version: bundle.header().version,
                why,
                report,
                elapsed: started.elapsed(),
                bundle,
            });
        });
    }
}

/// Drift found by one convergence: (detected, corrected, last drifting resource).
pub fn drift_of(done: &Done, audit_seen: &mut BTreeSet<String>) -> (u64, u64, Option<String>) {
    let mut detected = 0;
    let mut corrected = 0;
    let mut last = None;
    for r in &done.report.resources {
        match r.result {
            // A refresh passed along `notify` is a consequence of drift, not drift itself.
            Outcome::Changed
                if done.why == Why::Recheck
                    && !r.changes.iter().all(|c| c.ends_with("(notified)")) =>
            {
                detected += 1;
                corrected += 1;
                last = Some(r.resource.clone());
            }
            // Audit-only drift is counted once, when it first appears.
            Outcome::Drift if audit_seen.insert(r.resource.clone()) => {
                detected += 1;
                last = Some(r.resource.clone());
            }
            Outcome::Unchanged => {
                audit_seen.remove(&r.resource);
            }
            _ => {}
        }
    }
    (detected, corrected, last)
}

/// Watches the directories that hold managed paths; a change to a managed path asks for a
/// recheck of its channel.
pub struct Watch {
    watcher: Option<notify::INotifyWatcher>,
    /// Directories watched now.
    dirs: BTreeSet<PathBuf>,
    /// Real path → channel.
    paths: HashMap<PathBuf, String>,
    /// Why inotify is not used, when it is not.
    pub polling: Option<String>,
}

impl Watch {
    pub fn new(tx: mpsc::UnboundedSender<PathBuf>) -> Watch {
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                // Reads (our own re-checks among them) are not changes.
                if matches!(
                    ev.kind,
                    notify::EventKind::Access(_) | notify::EventKind::Other
                ) {
                    return;
                }
                for p in ev.paths {
                    let _ = tx.send(p);
                }
            }
        };
        match notify::INotifyWatcher::new(handler, notify::Config::default()) {
            Ok(w) => Watch {
                watcher: Some(w),
                dirs: BTreeSet::new(),
                paths: HashMap::new(),
                polling: None,
            },
            Err(e) => Watch {
                watcher: None,
                dirs: BTreeSet::new(),
                paths: HashMap::new(),
                polling: Some(format!("inotify unavailable ({e}); re-checking by polling")),
            },
        }
    }

    /// Watch the managed paths of `channel`'s definition (replacing what it watched before).
    pub fn set_channel(&mut self, root: &Path, channel: &str, bundle: &VerifiedBundle) {
        let mut map = crate::fsutil::RootMap::new(root);
        self.paths.retain(|_, c| c != channel);
        for r in &bundle.definition().resources {
            let logical = match &r.kind {
                ResourceKind::File { path, .. }
                | ResourceKind::Directory { path, .. }
                | ResourceKind::Symlink { path, .. }
                | ResourceKind::Absent { path } => path,
                _ => continue,
            };
            if let Ok(real) = map.resolve(logical) {
                self.paths.insert(real, channel.to_string());
            }
        }
        self.refresh_dirs();
    }

    /// The channel a changed path belongs to (None: not ours, or one of our temporaries).
    pub fn channel_of(&self, path: &Path) -> Option<&str> {
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(crate::fsutil::TMP_PREFIX))
        {
            return None;
        }
        self.paths.get(path).map(String::as_str)
    }

    pub fn watched_dirs(&self) -> usize {
        self.dirs.len()
    }

    fn refresh_dirs(&mut self) {
        let want: BTreeSet<PathBuf> = self
            .paths
            .keys()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for gone in self.dirs.difference(&want).cloned().collect::<Vec<_>>() {
            let _ = w.unwatch(&gone);
            self.dirs.remove(&gone);
        }
        for d in want {
            if self.dirs.contains(&d) || !d.is_dir() {
                continue;
            }
            match w.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(d);
                }
                Err(e) => {
                    let why = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                        "the kernel's inotify watch limit (fs.inotify.max_user_watches) is reached"
                            .to_string()
                    } else {
                        e.to_string()
                    };
                    self.polling = Some(format!(
                        "cannot watch {}: {why}; re-checking by polling",
                        d.display()
                    ));
                }
            }
        }
    }

    /// Directories that did not exist when watched may exist after an apply.
    pub fn rewatch(&mut self) {
        self.refresh_dirs();
    }
}
