//! The end-to-end tests, one module per area, in one test binary: one link instead of forty,
//! and the tests of every area share the test threads. Run one area with
//! `cargo test --test e2e tls_sni::`, one test by its name.
//!
//! Three files stay binaries of their own because they observe the whole process:
//! `observe_requests` (counts metric series, which every gateway in the process shares),
//! `proxy_protocols` (peak RSS of the process), `fuzz_mutate` (seconds of CPU).

#[path = "../support/mod.rs"]
mod support;

mod cli_explain;
mod cli_run;
mod config_fields;
mod config_isolation;
mod config_mutations;
mod fuzz_replay;
mod istio_fidelity;
mod ops_endpoints;
mod ops_explain;
mod proxy_actions;
mod proxy_cors;
mod proxy_fault;
mod proxy_h1_server;
mod proxy_limits;
mod proxy_mirror;
mod proxy_overload;
mod proxy_park;
mod proxy_tcp;
mod proxy_wire;
mod reload_files;
mod reload_invalid;
mod reload_listeners;
mod reload_state;
mod reload_swap;
mod retry_timeout;
mod route_host;
mod route_match;
mod scenario_failover;
mod scenario_rolling_restart;
mod tls_mutual;
mod tls_revocation;
mod tls_rotation;
mod tls_sni;
mod tls_tcp;
mod trace_export;
mod trace_propagation;
mod upstream_balancing;
mod upstream_keepalive;
mod upstream_outlier;
mod upstream_pool;
mod upstream_tls;
mod upstream_wire;
mod validate_cli;
mod validate_l4;

/// A file in `tests/e2e/` that is not a module here would never be compiled or run.
#[test]
fn every_file_here_is_a_module() {
    let main = include_str!("main.rs");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".rs").filter(|s| *s != "main") {
            assert!(
                main.lines().any(|l| l == format!("mod {stem};")),
                "tests/e2e/{name} is not declared in tests/e2e/main.rs"
            );
        }
    }
}
