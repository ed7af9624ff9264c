//! Replays every committed fuzz input (the seed corpora in `fuzz/seeds/<target>/` and the
//! crashes found, in `fuzz/regressions/<target>/`) through the very functions the fuzz targets
//! call (`fuzz/harness.rs`), on the stable toolchain: a fixed crash stays fixed in the normal suite.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Runs `f` on every file for `target`; fails naming each input that panicked.
fn replay(target: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    let mut failed = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = dir.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            inputs += 1;
            if catch_unwind(AssertUnwindSafe(|| f(&data))).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    assert!(inputs > 0, "no inputs for fuzz target {target}");
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
}

#[test]
fn path_inputs() {
    replay("path", harness::path);
}

#[test]
fn request_inputs() {
    replay("request", harness::request);
}

#[test]
fn framing_inputs() {
    replay("framing", harness::framing);
}

#[test]
fn yaml_inputs() {
    replay("yaml", harness::yaml);
}

#[test]
fn config_inputs() {
    replay("config", harness::config);
}

#[test]
fn the_request_target_routes_on_a_compiled_table() {
    let table = harness::table().expect("the harness config compiles");
    assert_eq!(table.vhosts.len(), 3, "shop.example.com, *.wild.test and *");
}
