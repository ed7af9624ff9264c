//! Every way a config file really changes triggers a reload: in-place write, rename-over,
//! delete + re-create, a Kubernetes ConfigMap `..data` symlink swap, and SIGHUP.

use crate::support;

use std::os::unix::fs::symlink;
use std::path::Path;

use support::binary::{get, Binary};
use support::{Client, TestGateway};

fn direct(body: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - directResponse: {{status: 200, body: {{string: {body}}}}}\n",
        support::gateway_yaml(&["*"])
    )
}

async fn body(gw: &TestGateway) -> String {
    Client::http1(gw.addr()).get("x", "/").await.body
}

#[tokio::test]
async fn in_place_write() {
    let gw = TestGateway::start_watching(&direct("one")).await;
    assert_eq!(body(&gw).await, "one");
    std::fs::write(gw.config_file(), direct("two")).unwrap();
    gw.wait_generation(2).await;
    assert_eq!(body(&gw).await, "two");
}

#[tokio::test]
async fn rename_over() {
    let gw = TestGateway::start_watching(&direct("one")).await;
    let tmp = gw.dir.path().join(".swp");
    std::fs::write(&tmp, direct("two")).unwrap();
    std::fs::rename(&tmp, gw.config_file()).unwrap();
    gw.wait_generation(2).await;
    assert_eq!(body(&gw).await, "two");
}

#[tokio::test]
async fn delete_and_recreate() {
    let gw = TestGateway::start_watching(&direct("one")).await;
    std::fs::remove_file(gw.config_file()).unwrap();
    // With the file gone the config is empty; applying it would close every listener, so the
    // reload is refused and the old config keeps serving.
    let st = gw
        .wait_status("the empty config to be refused", |s| s.failures >= 1)
        .await;
    assert!(
        st.last_errors[0].contains("no Istio networking resources found"),
        "{:?}",
        st.last_errors
    );
    assert_eq!(body(&gw).await, "one");
    std::fs::write(gw.config_file(), direct("two")).unwrap();
    gw.wait_generation(2).await;
    assert_eq!(body(&gw).await, "two");
}

/// Lays out a ConfigMap volume: `..<version>/config.yaml`, `..data -> ..<version>`,
/// `config.yaml -> ..data/config.yaml`.
fn configmap_version(dir: &Path, version: &str, yaml: &str) {
    let v = dir.join(format!("..{version}"));
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("config.yaml"), yaml).unwrap();
}

#[tokio::test]
async fn configmap_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    configmap_version(dir.path(), "2026_11_23_v1", &direct("one"));
    symlink("..2026_11_23_v1", dir.path().join("..data")).unwrap();
    symlink("..data/config.yaml", dir.path().join("config.yaml")).unwrap();
    let gw = TestGateway::start_watching_in(dir).await;
    assert_eq!(body(&gw).await, "one");
    // The kubelet's update: new version dir, new `..data_tmp` link, atomic rename over `..data`,
    // old version removed. The file `config.yaml` itself is never written.
    let d = gw.dir.path();
    configmap_version(d, "2026_11_23_v2", &direct("two"));
    symlink("..2026_11_23_v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_11_23_v1")).unwrap();
    gw.wait_generation(2).await;
    assert_eq!(body(&gw).await, "two");
    assert_eq!(gw.gw.status().borrow().failures, 0);
}

#[test]
fn sighup_reloads_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, direct("one")).unwrap();
    let gw = Binary::start(dir.path(), &["--no-watch"]);
    assert!(get(&gw.addr, "/").ends_with("one"));
    std::fs::write(&file, direct("two")).unwrap();
    gw.signal("HUP");
    gw.wait_line("config reloaded");
    assert!(get(&gw.addr, "/").ends_with("two"));
}

/// Reload after reload in the binary: each config is built in a fresh allocator heap
/// (`src/config_heap.rs`, on several threads when the files are many) while the last one is
/// served, and each version is what the next request gets.
#[test]
fn many_reloads_in_the_binary_serve_each_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), direct("v0")).unwrap();
    // More files and VirtualServices than threads, so that reading and compiling fan out.
    for i in 0..40 {
        let vs = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: extra{i}}}\nspec:\n  hosts: [\"h{i}.example.com\"]\n  gateways: [gw]\n  http:\n  - match: [{{uri: {{regex: \"/r{i}/[a-z]+\"}}}}]\n    directResponse: {{status: 200, body: {{string: extra{i}}}}}\n"
        );
        std::fs::write(dir.path().join(format!("extra{i}.yaml")), vs).unwrap();
    }
    let gw = Binary::start(dir.path(), &["--no-watch"]);
    assert!(get(&gw.addr, "/").ends_with("v0"));
    for n in 1..=15 {
        std::fs::write(dir.path().join("config.yaml"), direct(&format!("v{n}"))).unwrap();
        gw.signal("HUP");
        let line = gw.wait_line("config reloaded");
        assert!(line.contains(&format!("generation={}", n + 1)), "{line}");
        assert!(get(&gw.addr, "/").ends_with(&format!("v{n}")));
    }
}
