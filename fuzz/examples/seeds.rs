//! Writes the seed corpus: valid encodings of every structure a target decodes, one file each,
//! into `fuzz/corpus/<target>/seed-*`. Run `cargo run --example seeds --features agent` in
//! `fuzz/` (without the feature, the `frame` seeds are left out).

use driftless_fuzz::samples;
use std::path::Path;

fn write(target: &str, items: impl IntoIterator<Item = Vec<u8>>) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir)?;
    let mut n = 0;
    for (i, bytes) in items.into_iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), bytes)?;
        n = i + 1;
    }
    println!("{n:>3} seeds in {}", dir.display());
    Ok(())
}

fn main() -> std::io::Result<()> {
    let bundles: Vec<Vec<u8>> = samples::bundles().iter().map(|b| b.encode()).collect();
    write("bundle", bundles.clone())?;
    write("bundle_verify", bundles)?;
    write(
        "definition",
        samples::definitions().iter().map(|d| d.encode()),
    )?;
    write("message", samples::messages().iter().map(|m| m.encode()))?;
    write("status", samples::statuses().iter().map(|s| s.encode()))?;
    #[cfg(feature = "agent")]
    write("frame", samples::frames())?;
    #[cfg(not(feature = "agent"))]
    println!("frame: not written (run with --features agent)");
    write("marks", samples::marks().iter().map(|m| m.encode()))?;
    write(
        "certificate",
        samples::certificates().iter().map(|c| c.encode()),
    )?;
    write(
        "revocations",
        samples::revocation_lists().iter().map(|l| l.encode()),
    )?;
    write("root", samples::roots().iter().map(|r| r.encode()))?;
    Ok(())
}
