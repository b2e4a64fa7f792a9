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
