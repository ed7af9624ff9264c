//! Reading YAML from disk: files → documents → typed resources, each with its `Source`.
//!
//! Each file is read on its own (in parallel, `crate::par`) into [`Doc`]s; the documents then meet
//! in file order ([`Loader::merge`]), where redefinitions are found and reports are joined, so
//! the result and the order of what is reported do not depend on the threads.
//!
//! Every problem is collected (never stop at the first) so `meshgate validate` can print them all.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use yaml_serde::Value;

use super::content_hash::content_hash;
use super::fast_yaml;
use super::{
    ErrorKind, FileText, Kind, Report, Resource, ResourceId, Resources, Source, KNOWN_FIELDS,
};

const API_GROUP: &str = "networking.istio.io/";
const API_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const TOP_LEVEL: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Loads every `*.yaml`/`*.yml` file under `path` (or `path` itself when it is a file).
///
/// Directories are walked recursively in sorted order; entries whose name starts with `.` are
/// skipped, which also skips the `..data` / `..<timestamp>` folders of a Kubernetes ConfigMap
/// volume while the visible symlinks into them are read.
pub fn load_path(path: &Path, default_namespace: &str) -> (Resources, Report) {
    let mut report = Report::default();
    let mut files = Vec::new();
    collect_files(path, &mut files, &mut report, true);
    files.sort();
    // Files are read and parsed in parallel, then merged in order: what a later file redefines
    // replaces what an earlier one defined, as in a sequential read.
    let read = crate::par::map(&files, |file| {
        let source_file = Arc::new(file.clone());
        match fs::read_to_string(file) {
            Ok(text) => read_text(&text, source_file, default_namespace),
            Err(e) => {
                let mut doc = Doc::default();
                doc.early.error(
                    &Source::new(source_file, 0),
                    "",
                    ErrorKind::Io(e.to_string()),
                );
                vec![doc]
            }
        }
    });
    let resources = merge_all(read.into_iter().flatten(), &mut report);
    (resources, report)
}

/// Reads again a file's text that loaded before (its resources as they were then).
pub(super) fn read_again(
    text: &FileText,
    file: Arc<PathBuf>,
    default_namespace: &str,
) -> Resources {
    let docs = read_file_text(text, file, default_namespace);
    merge_all(docs, &mut Report::default())
}

/// Loads resources from YAML text, as if read from a file called `name`.
pub fn load_str(text: &str, name: &str, default_namespace: &str) -> (Resources, Report) {
    let mut report = Report::default();
    let docs = read_text(text, Arc::new(PathBuf::from(name)), default_namespace);
    let resources = merge_all(docs, &mut report);
    (resources, report)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, report: &mut Report, top: bool) {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            report.error(
                &Source::new(Arc::new(path.to_path_buf()), 0),
                "",
                ErrorKind::Io(e.to_string()),
            );
            return;
        }
    };
    if meta.is_file() {
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if top || is_yaml {
            out.push(path.to_path_buf());
        }
        return;
    }
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            report.error(
                &Source::new(Arc::new(path.to_path_buf()), 0),
                "",
                ErrorKind::Io(e.to_string()),
            );
            return;
        }
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        collect_files(&entry.path(), out, report, false);
    }
}

/// One document as read on its own, before it meets the others: what is reported before it is
/// named, its identity, what is reported after, and the typed resource (unless an error dropped
/// it). A file that cannot be read or parsed is a `Doc` with only `early` set.
#[derive(Default)]
struct Doc {
    early: Report,
    defines: Option<(ResourceId, Source)>,
    late: Report,
    resource: Option<AnyResource>,
}

// Moved twice on its way into its list; a box would be an allocation per resource.
#[allow(clippy::large_enum_variant)]
enum AnyResource {
    Gateway(Resource<super::GatewaySpec>),
    VirtualService(Resource<super::VirtualServiceSpec>),
    DestinationRule(Resource<super::DestinationRuleSpec>),
    ServiceEntry(Resource<super::ServiceEntrySpec>),
}

/// Accumulates documents in file order; a later definition of the same identity replaces the
/// earlier one.
#[derive(Default)]
struct Loader {
    resources: Resources,
    seen: HashMap<ResourceId, Source>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Documents merged in order (see [`Loader::merge`]).
fn merge_all(docs: impl IntoIterator<Item = Doc>, report: &mut Report) -> Resources {
    let mut loader = Loader::default();
    for doc in docs {
        loader.merge(doc, report);
    }
    loader.resources
}

impl Loader {
    fn merge(&mut self, doc: Doc, report: &mut Report) {
        report.extend(doc.early);
        let mut redefined = false;
        if let Some((id, source)) = doc.defines {
            if let Some(first) = self.seen.insert(id.clone(), source.clone()) {
                redefined = true;
                report.warn(
                    &source,
                    "",
                    ErrorKind::Redefined {
                        kind: id.kind,
                        namespace: id.namespace,
                        name: id.name,
                        first: first.location(),
                    },
                );
            }
        }
        report.extend(doc.late);
        fn put<S>(list: &mut Vec<Resource<S>>, res: Resource<S>, redefined: bool) {
            // Only a redefinition needs the (linear) search for the one it replaces.
            let earlier = redefined
                .then(|| {
                    list.iter()
                        .position(|r| r.namespace == res.namespace && r.name == res.name)
                })
                .flatten();
            match earlier {
                Some(i) => list[i] = res,
                None => list.push(res),
            }
        }
        let r = &mut self.resources;
        match doc.resource {
            None => {}
            Some(AnyResource::Gateway(res)) => put(&mut r.gateways, res, redefined),
            Some(AnyResource::VirtualService(res)) => put(&mut r.virtual_services, res, redefined),
            Some(AnyResource::DestinationRule(res)) => {
                put(&mut r.destination_rules, res, redefined)
            }
            Some(AnyResource::ServiceEntry(res)) => put(&mut r.service_entries, res, redefined),
        }
    }
}

fn read_text(text: &str, file: Arc<PathBuf>, default_namespace: &str) -> Vec<Doc> {
    // Editors on some systems write a byte-order mark; kubectl accepts it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    read_file_text(&FileText(Arc::from(text)), file, default_namespace)
}

/// A file's documents, each read on its own.
fn read_file_text(shared: &FileText, file: Arc<PathBuf>, default_namespace: &str) -> Vec<Doc> {
    // The common subset of YAML through the fast reader; anything else through yaml_serde.
    if let Some(docs) = fast_yaml::parse(&shared.0) {
        // No merge key to apply without the text `<<` (the fast reader reads no escapes that
        // could spell it).
        let merge = shared.0.contains("<<");
        return docs
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let source = Source::new(file.clone(), i + 1);
                read_value(value, merge, source, shared, default_namespace)
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(&shared.0).enumerate() {
        let source = Source::new(file.clone(), i + 1);
        match Value::deserialize(doc) {
            Ok(value) => out.push(read_value(value, true, source, shared, default_namespace)),
            // Stop at the first syntax error: the rest of this file is not read. This is what
            // keeps the parser from panicking. libyaml cannot resynchronise after an error (an
            // alias `*a` with no anchor `&a`, a bad indent): it resumes mid-document, and
            // yaml_serde panics ("unexpected end of mapping") on the unbalanced events it is then
            // given. A document that ends in an error is only cut short, and deserialising it
            // returns that error. Pinned by `tests::a_syntax_error_*` and by the stable fuzzer
            // (`tests/fuzz_mutate.rs`, target `config`), which no longer catches anything for the
            // loader.
            Err(e) => {
                let mut doc = Doc::default();
                doc.early
                    .error(&source, "", ErrorKind::Syntax(e.to_string()));
                out.push(doc);
                break;
            }
        }
    }
    out
}

fn read_value(
    mut value: Value,
    merge: bool,
    source: Source,
    text: &FileText,
    default_namespace: &str,
) -> Doc {
    let mut doc = Doc::default();
    // `<<: *anchor` merge keys, as Kubernetes YAML tooling applies them.
    if let Err(e) = if merge { value.apply_merge() } else { Ok(()) } {
        doc.early
            .error(&source, "", ErrorKind::Syntax(e.to_string()));
        return doc;
    }
    read_doc(value, source, text, default_namespace, &mut doc);
    doc
}

fn read_doc(value: Value, mut source: Source, text: &FileText, default_ns: &str, doc: &mut Doc) {
    let report = &mut doc.early;
    let hash = content_hash(&value);
    let map = match value {
        Value::Null => return, // empty document (trailing `---`, comments only)
        Value::Mapping(m) => m,
        other => {
            report.error(
                &source,
                "",
                ErrorKind::Type(format!(
                    "a resource must be a mapping, found {}",
                    type_name(&other)
                )),
            );
            return;
        }
    };
    let get_str = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
    let api_version = get_str("apiVersion").unwrap_or_default();
    let kind_str = get_str("kind").unwrap_or_default();
    let Some(version) = api_version.strip_prefix(API_GROUP) else {
        if api_version.is_empty()
            && matches!(
                kind_str.as_str(),
                "Gateway" | "VirtualService" | "DestinationRule" | "ServiceEntry"
            )
        {
            report.warn(
                    &source,
                    "apiVersion",
                    ErrorKind::Note(format!("missing; a {kind_str} needs apiVersion networking.istio.io/v1 (document skipped)")),
                );
            return;
        }
        tracing::debug!(file = %source.location(), kind = %kind_str, api_version, "skipping non-Istio resource");
        return;
    };
    let kind = match kind_str.as_str() {
        "Gateway" => Kind::Gateway,
        "VirtualService" => Kind::VirtualService,
        "DestinationRule" => Kind::DestinationRule,
        "ServiceEntry" => Kind::ServiceEntry,
        _ => {
            report.warn(
                &source,
                "kind",
                ErrorKind::UnknownKind {
                    kind: kind_str,
                    api_version,
                },
            );
            return;
        }
    };
    if !API_VERSIONS.contains(&version) {
        report.error(
            &source,
            "apiVersion",
            ErrorKind::Invalid {
                what: "apiVersion",
                value: api_version,
                why: "use networking.istio.io/v1, v1beta1 or v1alpha3".into(),
            },
        );
        return;
    }

    // Unknown top-level keys: reported once the resource is named (or when naming fails).
    let unknown_keys: Vec<(String, Option<String>)> = map
        .keys()
        .filter_map(Value::as_str)
        .filter(|key| !TOP_LEVEL.contains(key))
        .map(|key| {
            let suggestion = TOP_LEVEL.iter().find(|k| strsim::levenshtein(key, k) <= 2);
            (key.to_owned(), suggestion.map(|k| (*k).to_owned()))
        })
        .collect();
    let warn_unknown = |source: &Source, report: &mut Report| {
        for (key, suggestion) in &unknown_keys {
            report.warn(
                source,
                key.clone(),
                ErrorKind::UnknownField {
                    suggestion: suggestion.clone(),
                },
            );
        }
    };
    let meta: Metadata = match map.get("metadata") {
        Some(m) => match deserialize(m, "metadata", &source, report) {
            Some(m) => m,
            None => return,
        },
        None => Metadata::default(),
    };
    let Some(name) = meta.name.filter(|n| !n.is_empty()) else {
        warn_unknown(&source, report);
        report.error(&source, "metadata.name", ErrorKind::Missing);
        return;
    };
    let namespace = meta
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_ns.to_owned());
    let id = ResourceId {
        kind,
        namespace: namespace.clone(),
        name: name.clone(),
    };
    source.resource = Some(id.clone());
    warn_unknown(&source, report);

    let mut map = map;
    let spec = map.remove("spec").unwrap_or(Value::Null);
    let spec = if spec.is_null() {
        Value::Mapping(Default::default())
    } else {
        spec
    };

    doc.defines = Some((id, source.clone()));
    let report = &mut doc.late;
    macro_rules! typed {
        ($variant:ident) => {
            deserialize(&spec, "spec", &source, report).map(|spec| {
                AnyResource::$variant(Resource {
                    namespace,
                    name,
                    labels: meta.labels,
                    annotations: meta.annotations,
                    source: source.clone(),
                    hash,
                    text: text.clone(),
                    spec,
                })
            })
        };
    }
    doc.resource = match kind {
        Kind::Gateway => typed!(Gateway),
        Kind::VirtualService => typed!(VirtualService),
        Kind::DestinationRule => typed!(DestinationRule),
        Kind::ServiceEntry => typed!(ServiceEntry),
    };
}

/// Deserializes `value` into `T`, reporting type errors with their field path and unknown fields
/// as warnings (with the nearest known field name, as kubectl's warnings do).
///
/// Field paths are tracked only for a value that fails: it is read a second time for the path
/// (tracking it on every read was a tenth of load time).
fn deserialize<T: DeserializeOwned>(
    value: &Value,
    prefix: &str,
    source: &Source,
    report: &mut Report,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let result = T::deserialize(serde_ignored::Deserializer::new(value, &mut on_unknown));
    for (path, last) in unknown {
        let suggestion = suggest(&last);
        report.warn(
            source,
            join(prefix, &path),
            ErrorKind::UnknownField { suggestion },
        );
    }
    let error = match result {
        Ok(v) => return Some(v),
        Err(e) => e,
    };
    let (path, why) = match serde_path_to_error::deserialize::<_, T>(value) {
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            (path, e.into_inner().to_string())
        }
        // Not expected: the same value read the same way.
        Ok(_) => (String::new(), error.to_string()),
    };
    report.error(source, join(prefix, &path), ErrorKind::Type(why));
    None
}

fn join(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_owned()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

/// Formats a serde_ignored path as `http[0].rout`, returning it with its last key.
fn ignored_path(path: &serde_ignored::Path) -> (String, String) {
    fn walk(path: &serde_ignored::Path, out: &mut String, last: &mut String) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out, last);
                out.push_str(&format!("[{index}]"));
            }
            P::Map { parent, key } => {
                walk(parent, out, last);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
                *last = key.clone();
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out, last)
            }
        }
    }
    let mut out = String::new();
    let mut last = String::new();
    walk(path, &mut out, &mut last);
    (out, last)
}

fn suggest(field: &str) -> Option<String> {
    KNOWN_FIELDS
        .iter()
        .map(|k| (strsim::levenshtein(field, k), *k))
        .filter(|(d, k)| *d > 0 && *d <= 2.max(k.len() / 5))
        .min()
        .map(|(_, k)| k.to_owned())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of these made yaml_serde panic on the document after the error (libyaml resumes
    /// mid-document). The loader stops at the first error, so each is one syntax error, the
    /// resource before it is kept, and nothing panics (no `catch_unwind` anywhere around it).
    #[test]
    fn a_syntax_error_stops_the_file_and_nothing_panics() {
        let good = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {}\n---\n";
        for bad in [
            "a: *x\n",
            "a: &x 1\nb: *y\n",
            "a: {b: *x}\n",
            "a:\n  b: *x\n  c: 1\n",
            "- *x\n- 1\n",
            "a: [*x, 1]\n",
            "*x\n",
            "a: b: c\n---\nkind: Gateway\n",
        ] {
            let (res, report) = load_str(&format!("{good}{bad}"), "t.yaml", "default");
            assert_eq!(res.gateways.len(), 1, "{bad:?}");
            assert_eq!(report.errors.len(), 1, "{bad:?}: {:?}", report.errors);
            let e = report.errors[0].to_string();
            assert!(
                e.starts_with("t.yaml#2: YAML syntax error: "),
                "{bad:?}: {e}"
            );
        }
    }

    /// Files are read in parallel and merged in file order: what is reported comes in the order
    /// a sequential read gives, and the last definition of a name wins.
    #[test]
    fn files_read_in_parallel_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..30 {
            let yaml = format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
                 metadata: {{name: vs-{n}}}\n\
                 spec:\n  hosts: [h{i}.example.com]\n  extra{i}: 1\n  http:\n  \
                 - route: [{{destination: {{host: x}}}}]\n",
                n = i % 10
            );
            std::fs::write(dir.path().join(format!("f{i:02}.yaml")), yaml).unwrap();
        }
        let (res, report) = load_path(dir.path(), "default");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let hosts: Vec<&str> = res
            .virtual_services
            .iter()
            .map(|vs| vs.spec.hosts[0].as_str())
            .collect();
        let want: Vec<String> = (20..30).map(|i| format!("h{i}.example.com")).collect();
        assert_eq!(hosts, want);
        let got: Vec<String> = report
            .warnings
            .iter()
            .map(|w| {
                let file = w.source.file.file_name().unwrap().to_string_lossy();
                format!("{file} {}", w.field)
            })
            .collect();
        let mut want = Vec::new();
        for i in 0..30 {
            if i >= 10 {
                want.push(format!("f{i:02}.yaml ")); // defined again
            }
            want.push(format!("f{i:02}.yaml spec.extra{i}"));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn unknown_field_is_a_warning_with_suggestion() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [a.example.com]
  http:
  - retries: {attempts: 2, perTryTimout: 1s}
    route: [{destination: {host: x}}]
"#;
        let (res, report) = load_str(yaml, "t.yaml", "default");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(res.virtual_services.len(), 1);
        let w = report.warnings[0].to_string();
        assert_eq!(
            w,
            "t.yaml#1 VirtualService default/r: spec.http[0].retries.perTryTimout: unknown field (did you mean `perTryTimeout`?)"
        );
    }

    /// The path of a type error comes from reading the value again (`deserialize`); unknown
    /// fields seen before the error are still warned about, once.
    #[test]
    fn nested_type_error_names_its_path() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [a.example.com]\n  htp: 1\n  http:\n  - route: [{destination: {host: x}}]\n  - route: [{destination: {host: y}, weight: heavy}]\n";
        let (res, report) = load_str(yaml, "t.yaml", "default");
        assert!(res.virtual_services.is_empty());
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "t.yaml#1 VirtualService default/r: spec.http[1].route[0].weight: invalid type: string \"heavy\""
            ),
            "{errors:?}"
        );
        let warnings: Vec<&str> = report.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(warnings, ["spec.htp"]);
    }

    #[test]
    fn type_error_names_field() {
        let yaml = "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: g, namespace: ns}\nspec:\n  servers:\n  - port: {number: eighty}\n";
        let (_, report) = load_str(yaml, "g.yaml", "default");
        let e = report.errors[0].to_string();
        assert!(
            e.starts_with("g.yaml#1 Gateway ns/g: spec.servers[0].port.number: invalid type"),
            "{e}"
        );
    }
}
