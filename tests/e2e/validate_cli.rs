//! `meshgate validate` end to end: the binary is run on fixture files and its exact output and
//! exit code are checked.
//!
//! Fixtures live in `tests/fixtures/validate/`:
//! - `valid/`: bookinfo-style config (plus Kubernetes objects, nested and dot-directories) that
//!   must pass;
//! - `invalid/<rule>.yaml`: one mistake each, named after the rule it breaks;
//! - `several-errors/`, `several-load-errors/`: many mistakes spread over many files;
//! - `redefined/`, `redefined-later-invalid/`: one resource defined in two files.
//!
//! Paths are passed relative to the crate root, so they appear verbatim in the output.

use std::process::Command;

const FIXTURES: &str = "tests/fixtures/validate";

// === helpers ===

/// Runs `meshgate validate <args>` from the crate root; returns the exit code and stdout.
/// Stderr is echoed so that it shows up when a test fails.
fn validate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .arg("validate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // The flags they stand for change name resolution; keep the defaults.
        .env_remove("MESHGATE_DEFAULT_NAMESPACE")
        .env_remove("MESHGATE_PROXY_NAMESPACE")
        .env_remove("MESHGATE_CREDENTIALS_DIR")
        .output()
        .expect("run the meshgate binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.is_empty() {
        eprintln!("meshgate stderr:\n{stderr}");
    }
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let code = out
        .status
        .code()
        .expect("meshgate exited (not killed by a signal)");
    (code, stdout)
}

/// Path of a fixture, relative to the crate root.
fn fixture(path: &str) -> String {
    format!("{FIXTURES}/{path}")
}

/// Path of `invalid/<name>.yaml`.
fn invalid(name: &str) -> String {
    fixture(&format!("invalid/{name}.yaml"))
}

fn lines(stdout: &str) -> Vec<&str> {
    stdout.lines().collect()
}

/// Validates `invalid/<name>.yaml`; asserts exit code 1 and that the output is exactly one
/// `error: <file>…` line followed by `invalid: 1 errors, 0 warnings`. Returns the error line
/// without its `error: <file>` prefix, i.e. starting at `#<doc>`.
#[track_caller]
fn single_error(name: &str) -> String {
    let file = invalid(name);
    let (code, out) = validate(&[&file]);
    assert_eq!(code, 1, "{name} must be rejected; output:\n{out}");
    let got = lines(&out);
    assert_eq!(got.len(), 2, "expected one error line, got:\n{out}");
    assert_eq!(got[1], "invalid: 1 errors, 0 warnings", "output:\n{out}");
    let prefix = format!("error: {file}");
    got[0]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("error line does not name {file}:\n{out}"))
        .to_owned()
}

// === valid config ===

#[test]
fn bookinfo_gateway_and_virtual_service_pass() {
    // 5 OR'ed uri matches become 5 routes to the one productpage:9080 cluster.
    let (code, out) = validate(&[&fixture("valid/bookinfo/bookinfo-gateway.yaml")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        ["ok: 1 Gateways, 1 VirtualServices, 0 DestinationRules, 0 ServiceEntries → 1 listeners, 1 virtual hosts, 5 routes, 1 clusters (0 warnings)"]
    );
}

#[test]
fn multi_document_file_with_leading_comments_and_trailing_separator_passes() {
    let (code, out) = validate(&[&fixture("valid/bookinfo/destination-rule-all.yaml")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        ["ok: 0 Gateways, 0 VirtualServices, 3 DestinationRules, 0 ServiceEntries → 0 listeners, 0 virtual hosts, 0 routes, 0 clusters (0 warnings)"]
    );
}

#[test]
fn bookinfo_directory_passes() {
    let (code, out) = validate(&[&fixture("valid/bookinfo")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        ["ok: 1 Gateways, 1 VirtualServices, 3 DestinationRules, 0 ServiceEntries → 1 listeners, 1 virtual hosts, 5 routes, 1 clusters (0 warnings)"]
    );
}

#[test]
fn virtual_service_without_gateways_is_mesh_only_and_passes() {
    let (code, out) = validate(&[&fixture("valid/mesh-only-virtual-service.yaml")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        ["ok: 0 Gateways, 1 VirtualServices, 0 DestinationRules, 0 ServiceEntries → 0 listeners, 0 virtual hosts, 0 routes, 0 clusters (0 warnings)"]
    );
}

#[test]
fn kubernetes_resources_are_skipped_silently() {
    // A Deployment and a Service next to a ServiceEntry: no warning about them.
    let (code, out) = validate(&[&fixture("valid/kubernetes-and-service-entry.yaml")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        ["ok: 0 Gateways, 0 VirtualServices, 0 DestinationRules, 1 ServiceEntries → 0 listeners, 0 virtual hosts, 0 routes, 0 clusters (0 warnings)"]
    );
}

#[test]
fn lowercase_protocol_is_accepted() {
    // `protocol: http` on port 8081: served as HTTP (a listener, no "not supported" warning).
    let (code, out) = validate(&[&fixture("valid/nested/team-a")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        ["ok: 1 Gateways, 1 VirtualServices, 0 DestinationRules, 0 ServiceEntries → 1 listeners, 1 virtual hosts, 1 routes, 1 clusters (0 warnings)"]
    );
}

#[test]
fn nested_directories_are_read_and_dot_directories_skipped() {
    // The `..data` directory holds a broken file: it fails when validated on its own...
    let (code, out) = validate(&[&fixture("valid/nested/..data")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("YAML syntax error"), "{out}");
    // ...and is not read when its parent is. `team-a/v1/routes.yml` (two levels down, `.yml`)
    // is read; `team-a/v1/README.txt` (not YAML) is not.
    let (code, out) = validate(&[&fixture("valid/nested")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        ["ok: 1 Gateways, 1 VirtualServices, 0 DestinationRules, 0 ServiceEntries → 1 listeners, 1 virtual hosts, 1 routes, 1 clusters (0 warnings)"]
    );
}

#[test]
fn whole_valid_tree_passes_even_with_strict() {
    let dir = fixture("valid");
    for args in [vec![dir.as_str()], vec!["--strict", dir.as_str()]] {
        let (code, out) = validate(&args);
        assert_eq!(code, 0, "{args:?}: {out}");
        assert_eq!(
            lines(&out),
            ["ok: 2 Gateways, 3 VirtualServices, 3 DestinationRules, 1 ServiceEntries → 2 listeners, 2 virtual hosts, 6 routes, 2 clusters (0 warnings)"],
            "{args:?}"
        );
    }
}

// === invalid config: one rule per fixture ===

#[test]
fn yaml_syntax_error_names_document_line_and_column() {
    // Document 2 of the file; line numbers count from the top of the file.
    let e = single_error("yaml-syntax-error");
    assert!(e.starts_with("#2: YAML syntax error: "), "{e}");
    assert!(e.contains("at line 20 column 3"), "{e}");
    assert!(
        e.contains("while parsing a flow sequence at line 19 column 10"),
        "{e}"
    );
}

#[test]
fn gateway_port_number_must_be_an_integer() {
    assert_eq!(
        single_error("port-number-string"),
        "#1 Gateway edge/web: spec.servers[0].port.number: invalid type: string \"eighty\", expected i64"
    );
}

#[test]
fn unknown_field_is_a_warning_with_suggestion() {
    let file = invalid("unknown-field-typo");
    let (code, out) = validate(&[&file]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        [
            format!("warning: {file}#1 VirtualService default/ratings: spec.http[0].retries.perTryTimout: unknown field (did you mean `perTryTimeout`?)").as_str(),
            "ok: 0 Gateways, 1 VirtualServices, 0 DestinationRules, 0 ServiceEntries → 0 listeners, 0 virtual hosts, 0 routes, 0 clusters (1 warnings)",
        ]
    );
}

#[test]
fn field_not_supported_yet_is_a_warning_naming_it() {
    let file = invalid("not-yet-supported-field");
    let warning = format!("warning: {file}#1 DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.warmup: slow-start warmup: not supported by meshgate yet; ignored");
    let (code, out) = validate(&[&file]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        [
            warning.as_str(),
            "ok: 0 Gateways, 0 VirtualServices, 1 DestinationRules, 0 ServiceEntries → 0 listeners, 0 virtual hosts, 0 routes, 0 clusters (1 warnings)",
        ]
    );
    let (code, out) = validate(&["--strict", &file]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(lines(&out)[0], warning);
}

#[test]
fn unknown_field_fails_with_strict() {
    let file = invalid("unknown-field-typo");
    let (code, out) = validate(&["--strict", &file]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        lines(&out),
        [
            format!("warning: {file}#1 VirtualService default/ratings: spec.http[0].retries.perTryTimout: unknown field (did you mean `perTryTimeout`?)").as_str(),
            "invalid: 0 errors, 1 warnings (--strict)",
        ]
    );
}

#[test]
fn unknown_istio_kind_is_skipped_with_a_warning() {
    let file = invalid("unsupported-kind-sidecar");
    let warning = format!(
        "warning: {file}#1: kind: unknown kind \"Sidecar\" (apiVersion networking.istio.io/v1); skipped"
    );
    let (code, out) = validate(&[&file]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        [
            warning.as_str(),
            "ok: 0 Gateways, 0 VirtualServices, 0 DestinationRules, 0 ServiceEntries → 0 listeners, 0 virtual hosts, 0 routes, 0 clusters (1 warnings)",
        ]
    );
    let (code, out) = validate(&["--strict", &file]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        lines(&out),
        [warning.as_str(), "invalid: 0 errors, 1 warnings (--strict)"]
    );
}

#[test]
fn uri_regex_must_compile() {
    assert_eq!(
        single_error("bad-regex"),
        "#1 VirtualService default/api: spec.http[0].match[0].uri.regex: invalid regex \"/api/(v1|v2\": unclosed group"
    );
}

#[test]
fn regex_longer_than_1024_chars_is_rejected() {
    assert_eq!(
        single_error("regex-too-long"),
        "#1 VirtualService default/api: spec.http[0].match[0].uri.regex: invalid regex \"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…\": longer than 1024 characters"
    );
}

#[test]
fn redirect_and_route_cannot_be_combined() {
    assert_eq!(
        single_error("redirect-and-route"),
        "#1 VirtualService default/legacy: spec.http[0]: `redirect` and `route` cannot be used together"
    );
}

#[test]
fn route_needs_route_redirect_or_direct_response() {
    assert_eq!(
        single_error("no-route-action"),
        "#1 VirtualService default/empty-action: spec.http[0].route: one of route, redirect or directResponse is required"
    );
}

#[test]
fn gateway_reference_must_resolve_to_an_existing_gateway() {
    // The Gateway exists in istio-system; the bare name resolves in the VirtualService's namespace.
    assert_eq!(
        single_error("unknown-gateway"),
        "#2 VirtualService shop/shop: spec.gateways[0]: gateway \"public-gateway\" (resolved to shop/public-gateway) does not exist"
    );
}

#[test]
fn destination_weight_must_not_be_negative() {
    assert_eq!(
        single_error("negative-weight"),
        "#1 VirtualService default/reviews: spec.http[0].route[0].weight: invalid weight \"-5\": must be >= 0"
    );
}

#[test]
fn destination_weights_must_not_all_be_zero() {
    assert_eq!(
        single_error("zero-total-weight"),
        "#1 VirtualService default/reviews: spec.http[0].route: total weight of destinations is 0"
    );
}

#[test]
fn direct_response_status_must_be_in_range() {
    assert_eq!(
        single_error("direct-response-status-700"),
        "#1 VirtualService default/maintenance: spec.http[0].directResponse.status: 700 is out of range (200..=599)"
    );
}

#[test]
fn redirect_code_must_be_supported() {
    assert_eq!(
        single_error("redirect-code-305"),
        "#1 VirtualService default/moved: spec.http[0].redirect.redirectCode: invalid redirect code \"305\": use 301, 302, 303, 307 or 308"
    );
}

#[test]
fn rewrite_uri_and_uri_regex_rewrite_are_exclusive() {
    assert_eq!(
        single_error("rewrite-uri-and-regex"),
        "#1 VirtualService default/rewrites: spec.http[0].rewrite: `uri` and `uriRegexRewrite` cannot be used together"
    );
}

#[test]
fn host_header_cannot_be_removed() {
    // `Host` is the second entry; the check is case-insensitive.
    assert_eq!(
        single_error("remove-host-header"),
        "#1 VirtualService default/headers: spec.http[0].headers.request.remove[1]: invalid header name \"Host\": `host` cannot be removed"
    );
}

#[test]
fn header_value_variables_must_be_supported() {
    assert_eq!(
        single_error("unsupported-header-variable"),
        "#1 VirtualService default/headers: spec.http[0].headers.response.set.x-upstream: invalid header value \"%UPSTREAM_HOST%\": variable %UPSTREAM_HOST% is not supported (supported: DOWNSTREAM_REMOTE_ADDRESS, DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, REQ(header), HOSTNAME, START_TIME)"
    );
}

#[test]
fn timeout_must_be_at_least_1ms() {
    assert_eq!(
        single_error("timeout-below-1ms"),
        "#1 VirtualService default/fast: spec.http[0].timeout: invalid duration \"0.5ms\": must be at least 1ms"
    );
}

#[test]
fn timeout_needs_a_unit() {
    assert_eq!(
        single_error("timeout-without-unit"),
        "#1 VirtualService default/slow: spec.http[0].timeout: invalid duration \"10\": missing unit (use ms, s, m or h)"
    );
}

#[test]
fn gateway_hosts_must_be_fully_qualified() {
    assert_eq!(
        single_error("gateway-short-host"),
        "#1 Gateway default/reviews-gateway: spec.servers[0].hosts[0]: invalid host \"reviews\": short names are not allowed in Gateway hosts; use a fully qualified name"
    );
}

#[test]
fn gateway_port_names_must_be_unique() {
    assert_eq!(
        single_error("gateway-duplicate-port-name"),
        "#1 Gateway default/two-ports: spec.servers[1].port.name: duplicate port name \"http\" (first at spec.servers[0])"
    );
}

#[test]
fn gateway_port_number_must_be_in_range() {
    assert_eq!(
        single_error("gateway-port-70000"),
        "#1 Gateway default/big-port: spec.servers[0].port.number: 70000 is out of range (1..=65535)"
    );
}

#[test]
fn static_service_entry_endpoints_must_be_ip_addresses() {
    assert_eq!(
        single_error("service-entry-static-hostname"),
        "#1 ServiceEntry data/legacy-db: spec.endpoints[1].address: invalid address \"db-2.legacy.internal\": STATIC resolution needs an IP address"
    );
}

#[test]
fn destination_rule_subset_names_must_be_unique() {
    assert_eq!(
        single_error("destination-rule-duplicate-subset"),
        "#1 DestinationRule default/reviews: spec.subsets[2].name: duplicate subset \"v1\" (first at spec.subsets[0])"
    );
}

#[test]
fn metadata_name_is_required() {
    assert_eq!(
        single_error("missing-metadata-name"),
        "#1: metadata.name: is required"
    );
}

#[test]
fn api_version_must_be_supported() {
    assert_eq!(
        single_error("unsupported-api-version"),
        "#1: apiVersion: invalid apiVersion \"networking.istio.io/v2\": use networking.istio.io/v1, v1beta1 or v1alpha3"
    );
}

// === many errors at once ===

#[test]
fn all_errors_in_a_directory_are_reported_with_their_files() {
    let dir = fixture("several-errors");
    let (code, out) = validate(&[&dir]);
    assert_eq!(code, 1, "{out}");
    let expected_errors = [
        "gateway.yaml#1 Gateway shop/shop-gateway: spec.servers[0].port.number: 70000 is out of range (1..=65535)",
        "gateway.yaml#1 Gateway shop/shop-gateway: spec.servers[0].hosts[0]: invalid host \"storefront\": short names are not allowed in Gateway hosts; use a fully qualified name",
        "policies/destination-rules.yaml#2 DestinationRule shop/storefront: spec.subsets[1].name: duplicate subset \"v1\" (first at spec.subsets[0])",
        "external/service-entries.yml#1 ServiceEntry shop/payments: spec.endpoints[0].address: invalid address \"payments-1.example.net\": STATIC resolution needs an IP address",
        "routes/checkout.yaml#1 VirtualService shop/checkout: spec.gateways[0]: gateway \"checkout-gateway\" (resolved to shop/checkout-gateway) does not exist",
        "routes/storefront.yaml#1 VirtualService shop/storefront: spec.http[0].route[0].weight: invalid weight \"-5\": must be >= 0",
    ];
    let got = lines(&out);
    for e in expected_errors {
        let line = format!("error: {dir}/{e}");
        assert!(
            got.contains(&line.as_str()),
            "missing\n  {line}\nin:\n{out}"
        );
    }
    let warning = format!("warning: {dir}/routes/storefront.yaml#1 VirtualService shop/storefront: spec.http[0].retries.perTryTimout: unknown field (did you mean `perTryTimeout`?)");
    assert!(
        got.contains(&warning.as_str()),
        "missing\n  {warning}\nin:\n{out}"
    );
    assert_eq!(
        got.len(),
        expected_errors.len() + 2,
        "unexpected lines:\n{out}"
    );
    assert_eq!(got.last(), Some(&"invalid: 6 errors, 1 warnings"));
}

#[test]
fn all_load_errors_in_a_directory_are_reported_with_their_files() {
    // Syntax, type, missing name and apiVersion errors: one file each, none stops the others.
    let dir = fixture("several-load-errors");
    let (code, out) = validate(&[&dir]);
    assert_eq!(code, 1, "{out}");
    let got = lines(&out);
    assert_eq!(got.len(), 5, "{out}");
    assert!(
        got[0].starts_with(&format!(
            "error: {dir}/a-syntax.yaml#1: YAML syntax error: "
        )),
        "{out}"
    );
    assert_eq!(
        got[1..],
        [
            format!("error: {dir}/b-type.yaml#1 Gateway default/b: spec.servers[0].port.number: invalid type: string \"eighty\", expected i64").as_str(),
            format!("error: {dir}/c-no-name.yaml#1: metadata.name: is required").as_str(),
            format!("error: {dir}/d-api-version.yaml#1: apiVersion: invalid apiVersion \"networking.istio.io/v2\": use networking.istio.io/v1, v1beta1 or v1alpha3").as_str(),
            "invalid: 4 errors, 0 warnings",
        ]
    );
}

// === a resource defined twice ===

#[test]
fn redefinition_warns_and_later_definition_wins() {
    // The first definition (port 70000) would be an error; the later one replaces it.
    let dir = fixture("redefined");
    let (code, out) = validate(&[&dir]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines(&out),
        [
            format!("warning: {dir}/overrides/20-gateway.yaml#1 Gateway default/bookinfo-gateway: Gateway default/bookinfo-gateway is defined again here; this definition replaces the one in {dir}/10-gateway.yaml#1").as_str(),
            "ok: 1 Gateways, 1 VirtualServices, 0 DestinationRules, 0 ServiceEntries → 1 listeners, 1 virtual hosts, 1 routes, 1 clusters (1 warnings)",
        ]
    );
}

#[test]
fn later_invalid_redefinition_is_reported_against_its_own_file() {
    let dir = fixture("redefined-later-invalid");
    let (code, out) = validate(&[&dir]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        lines(&out),
        [
            format!("error: {dir}/b-reviews.yaml#1 DestinationRule default/reviews: spec.subsets[1].name: duplicate subset \"v1\" (first at spec.subsets[0])").as_str(),
            format!("warning: {dir}/b-reviews.yaml#1 DestinationRule default/reviews: DestinationRule default/reviews is defined again here; this definition replaces the one in {dir}/a-reviews.yaml#1").as_str(),
            "invalid: 1 errors, 1 warnings",
        ]
    );
}

// === unreadable input ===

#[test]
fn missing_path_is_an_error_naming_it() {
    let path = fixture("does-not-exist.yaml");
    let (code, out) = validate(&[&path]);
    assert_eq!(code, 1, "{out}");
    let got = lines(&out);
    assert_eq!(got.len(), 2, "{out}");
    assert!(
        got[0].starts_with(&format!("error: {path}#0: cannot read: ")),
        "{out}"
    );
    assert_eq!(got[1], "invalid: 1 errors, 0 warnings");
}

#[test]
fn non_utf8_file_is_an_error_naming_it() {
    assert_eq!(
        single_error("latin1-encoded"),
        "#0: cannot read: stream did not contain valid UTF-8"
    );
}

#[cfg(unix)]
#[test]
fn dangling_symlink_in_a_directory_is_an_error_naming_it() {
    // Like a ConfigMap volume whose `..data` target vanished.
    let tmp = tempfile::tempdir().expect("temp dir");
    let link = tmp.path().join("gateway.yaml");
    std::os::unix::fs::symlink(tmp.path().join("..data/gateway.yaml"), &link).expect("symlink");
    let dir = tmp.path().to_str().expect("UTF-8 temp path");
    let (code, out) = validate(&[dir]);
    assert_eq!(code, 1, "{out}");
    let got = lines(&out);
    assert_eq!(got.len(), 2, "{out}");
    assert!(
        got[0].starts_with(&format!("error: {}#0: cannot read: ", link.display())),
        "{out}"
    );
    assert_eq!(got[1], "invalid: 1 errors, 0 warnings");
}

// === loader edge cases (written at run time into a temp dir) ===

/// Validates one YAML text written to a temp file; returns (code, stdout, file path).
fn validate_text(name: &str, bytes: &[u8]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let p = path.to_str().unwrap().to_owned();
    let (code, out) = validate(&[&p]);
    (code, out, p)
}

const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n";

#[test]
fn byte_order_mark_is_ignored() {
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend_from_slice(DR.as_bytes());
    let (code, out, _) = validate_text("bom.yaml", &bytes);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 DestinationRules"), "{out}");
}

#[test]
fn yaml_merge_keys_are_applied() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nx-defaults: &p {number: 8080, protocol: HTTP}\nspec:\n  servers:\n  - port: {<<: *p, name: http}\n    hosts: [\"*\"]\n";
    let (code, out, file) = validate_text("merge.yaml", yaml.as_bytes());
    assert_eq!(code, 0, "{out}");
    // The anchor's carrier key is unknown at the top level: a warning, nothing else.
    assert_eq!(
        lines(&out)[0],
        format!("warning: {file}#1 Gateway default/g: x-defaults: unknown field")
    );
}

#[test]
fn top_level_typo_gets_a_suggestion() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetdata: {name: a}\nspec: {host: a}\n";
    let (code, out, file) = validate_text("typo.yaml", yaml.as_bytes());
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "warning: {file}#1: metdata: unknown field (did you mean `metadata`?)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("error: {file}#1: metadata.name: is required")),
        "{out}"
    );
}

#[test]
fn load_errors_do_not_hide_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "a: [\n").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [a.example.com]\n  http:\n  - match: [{uri: {regex: \"(\"}}]\n    route: [{destination: {host: a}}]\n").unwrap();
    let (code, out) = validate(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("a.yaml#1: YAML syntax error"), "{out}");
    assert!(
        out.contains(
            "b.yaml#1 VirtualService default/vs: spec.http[0].match[0].uri.regex: invalid regex"
        ),
        "{out}"
    );
    assert!(out.ends_with("invalid: 2 errors, 0 warnings\n"), "{out}");
}

#[test]
fn alias_without_anchor_is_a_yaml_error_not_a_crash() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: g\n  namespace: *a\n";
    let (code, out, file) = validate_text("alias.yaml", yaml.as_bytes());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "error: {file}#1: YAML syntax error: unknown anchor"
        )),
        "{out}"
    );
}

// === certificate files ===

/// The certificate, key, CA and CRL files a config names are read as serving reads them: each
/// problem is an error naming the resource, field, file and reason; `credentialName` files are
/// checked only with `--credentials-dir`.
#[test]
fn unreadable_or_unparseable_tls_files_are_errors() {
    use crate::support::tls::Ca;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("ca");
    let (c, k) = ca.server(&["m.example"]).write(d, "server");
    let (_, other_key) = ca.server(&["m.example"]).write(d, "other");
    std::fs::write(d.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(d.join("ca.crl"), ca.crl(&[])).unwrap();
    std::fs::write(d.join("bad.crl"), "not a list").unwrap();
    std::fs::write(
        d.join("broken.crl"),
        "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let p = |name: &str| d.join(name).display().to_string();
    let config = |key: &str, crl: &str, upstream_crl: &str, credential: bool| {
        let credential = if credential {
            "\n  - port: {number: 8443, name: https-c, protocol: HTTPS}\n    hosts: [c.example]\n    tls: {mode: SIMPLE, credentialName: c-cert}"
        } else {
            ""
        };
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [m.example]\n    tls: {{mode: MUTUAL, serverCertificate: {}, privateKey: {key}, caCertificates: {}, caCrl: {crl}}}{credential}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: m}}\nspec:\n  hosts: [m.example, c.example]\n  gateways: [gw]\n  http: [{{route: [{{destination: {{host: up.svc}}}}]}}]\n---\n\
             apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: up}}\nspec:\n  hosts: [up.svc]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n---\n\
             apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: up}}\nspec:\n  host: up.svc\n  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: {}, caCrl: {upstream_crl}}}}}\n",
            c.display(),
            p("ca.crt"),
            p("ca.crt"),
        )
    };
    let file = d.join("config.yaml");
    let file_s = file.display().to_string();

    std::fs::write(
        &file,
        config(&k.display().to_string(), &p("ca.crl"), &p("ca.crl"), true),
    )
    .unwrap();
    let (code, out) = validate(&[&file_s]);
    assert_eq!(code, 0, "good files, the credential unchecked:\n{out}");

    std::fs::write(
        &file,
        config(
            &other_key.display().to_string(),
            &p("bad.crl"),
            &p("broken.crl"),
            true,
        ),
    )
    .unwrap();
    let creds = tempfile::tempdir().unwrap();
    let creds_s = creds.path().display().to_string();
    let (code, out) = validate(&[&file_s, "--credentials-dir", &creds_s]);
    assert_eq!(code, 1, "{out}");
    let gw = format!("error: {file_s}#1 Gateway default/gw: spec.servers");
    assert_eq!(
        lines(&out),
        [
            format!("{gw}[0].tls.privateKey: {} does not match the certificate in {}", other_key.display(), c.display()),
            format!("{gw}[0].tls.caCrl: {}: no PEM certificate revocation list (-----BEGIN X509 CRL-----) found", p("bad.crl")),
            format!("{gw}[1].tls.credentialName: cannot read {}/c-cert/tls.crt: No such file or directory (os error 2)", creds_s),
            format!("error: {file_s}#4 DestinationRule default/up: spec.trafficPolicy.tls.caCrl: {}: unusable certificate revocation list: ParseError", p("broken.crl")),
            "invalid: 4 errors, 0 warnings".to_string(),
        ]
    );
}
