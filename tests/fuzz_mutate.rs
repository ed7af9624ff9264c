//! A bounded mutation fuzzer on the stable toolchain, run by every `cargo test` (so by CI): each
//! fuzz target's committed seeds (`fuzz/seeds/<target>/`) are mutated a fixed number of times
//! with a fixed-seed RNG (bit flips, byte changes, inserts, deletes, splices of interesting
//! tokens, duplication, truncation) and fed to the same harness functions `cargo fuzz` drives
//! (`fuzz/harness.rs`). Deterministic: the same inputs every run, so a failure reproduces. The
//! coverage-guided search stays `fuzz/run.sh` (nightly, libFuzzer); this keeps its targets
//! exercised past the seeds in the normal suite.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Tokens that matter to the parsers under test, spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"%",
    b"%2e",
    b"%2f",
    b"%00",
    b"..",
    b"..;",
    b"/",
    b"\\",
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b"Host: ",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"0\r\n\r\n",
    b"ffffffffffffffff",
    b"\xc3\xa9",
    b"\xf0\x9f\x98\x80",
    b"\xff",
    b"---\n",
    b"apiVersion: networking.istio.io/v1\n",
    b"kind: VirtualService\n",
    b"  - ",
    b"{",
    b"}",
    b"[",
    b"*",
    b"~",
    b"&a",
    b"*a",
    b"<<: *a\n",
    b"!!binary",
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..=4) {
        let len = input.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..=len);
                input.insert(i, rng.gen());
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - i).min(16));
                input.drain(i..i + n);
            }
            4 => {
                let i = rng.gen_range(0..=len);
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                input.splice(i..i, t.iter().copied());
            }
            5 if len > 0 && len < 64 * 1024 => {
                let i = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - i).min(64));
                let chunk = input[i..i + n].to_vec();
                input.splice(i..i, chunk);
            }
            _ if len > 0 => input.truncate(rng.gen_range(0..len)),
            _ => input.push(rng.gen()),
        }
    }
}

/// Feeds `rounds` mutants of `target`'s seeds to `f`; fails with the first input that panicked.
fn fuzz(target: &str, seed: u64, rounds: usize, f: fn(&[u8])) {
    let corpus = seeds(target);
    assert!(!corpus.is_empty(), "no seeds for {target}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut failed = None;
    for round in 0..rounds {
        let mut input = corpus[round % corpus.len()].clone();
        mutate(&mut rng, &mut input);
        if catch_unwind(AssertUnwindSafe(|| f(&input))).is_err() {
            failed = Some((round, input));
            break;
        }
    }
    if let Some((round, input)) = failed {
        panic!(
            "{target}: mutant {round} panicked; save it as fuzz/regressions/{target}/<name> to \
             replay it: {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn path_mutants() {
    fuzz("path", 1, 200_000, harness::path);
}

#[test]
fn request_mutants() {
    fuzz("request", 2, 50_000, harness::request);
}

#[test]
fn framing_mutants() {
    fuzz("framing", 3, 200_000, harness::framing);
}

#[test]
fn config_mutants() {
    fuzz("config", 4, 15_000, harness::config);
}

#[test]
fn yaml_mutants() {
    fuzz("yaml", 5, 60_000, harness::yaml);
}
