//! `driftless simulate` from the command line: a scenario's outputs are the same bytes on one
//! thread and on two, and a bad `--threads` is refused before anything runs.

use std::path::Path;
use std::process::Command;

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("simulate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run driftless simulate")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("out dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read output"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_outputs_do_not_depend_on_the_thread_count() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut outs = Vec::new();
    for t in ["1", "2"] {
        let out = tmp.path().join(t);
        let o = simulate(&[
            "simulations/crash-restart.toml",
            "--threads",
            t,
            "--out",
            out.to_str().expect("utf-8 path"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outs.push(files(&out));
    }
    let names: Vec<&str> = outs[0].iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"summary.json"), "{names:?}");
    assert_eq!(outs[0], outs[1], "outputs differ between 1 and 2 threads");
}

#[test]
fn a_thread_count_of_zero_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("never");
    let o = simulate(&[
        "simulations/crash-restart.toml",
        "--threads",
        "0",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--threads"));
    assert!(!out.exists(), "nothing is written for a bad flag");
}

/// Whether the process's allocator was mimalloc: asked to, mimalloc prints its statistics
/// on exit (`MIMALLOC_SHOW_STATS`); the system's allocator prints nothing of the kind.
fn under_mimalloc(args: &[&str]) -> bool {
    let o = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(args)
        .env("MIMALLOC_SHOW_STATS", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run driftless");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all = [o.stdout, o.stderr].concat();
    String::from_utf8_lossy(&all).contains("peak rss:")
}

#[test]
fn the_simulator_runs_on_mimalloc_and_every_other_command_on_the_systems_allocator() {
    // The simulator frees across threads (mimalloc: 139 → 113 s at 100k); the agent keeps the
    // system's allocator for its resident memory (11 MB idle, 20 under mimalloc).
    assert!(under_mimalloc(&[
        "simulate",
        "simulations/crash-restart.toml"
    ]));
    assert!(!under_mimalloc(&["--version"]));
    assert!(!under_mimalloc(&["agent", "--help"]));
}
