//! Reading YAML from disk: files → documents → typed resources, each with its `Source`.
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
    let mut loader = Loader::new(default_namespace);
    for file in files {
        let source_file = Arc::new(file.clone());
        match fs::read_to_string(&file) {
            Ok(text) => loader.load_text(&text, source_file, &mut report),
            Err(e) => report.error(
                &Source::new(source_file, 0),
                "",
                ErrorKind::Io(e.to_string()),
            ),
        }
    }
    (loader.finish(), report)
}

/// Reads again a file's text that loaded before (its resources as they were then).
pub(super) fn read_again(
    text: &FileText,
    file: Arc<PathBuf>,
    default_namespace: &str,
) -> Resources {
    let mut loader = Loader::new(default_namespace);
    loader.load_file_text(text, file, &mut Report::default());
    loader.finish()
}

/// Loads resources from YAML text, as if read from a file called `name`.
pub fn load_str(text: &str, name: &str, default_namespace: &str) -> (Resources, Report) {
    let mut report = Report::default();
    let mut loader = Loader::new(default_namespace);
    loader.load_text(text, Arc::new(PathBuf::from(name)), &mut report);
    (loader.finish(), report)
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

/// Accumulates resources; a later definition of the same identity replaces the earlier one.
struct Loader<'a> {
    default_namespace: &'a str,
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

impl<'a> Loader<'a> {
    fn new(default_namespace: &'a str) -> Self {
        Loader {
            default_namespace,
            resources: Resources::default(),
            seen: HashMap::new(),
        }
    }

    fn finish(self) -> Resources {
        self.resources
    }

    fn load_text(&mut self, text: &str, file: Arc<PathBuf>, report: &mut Report) {
        // Editors on some systems write a byte-order mark; kubectl accepts it.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        self.load_file_text(&FileText(Arc::from(text)), file, report);
    }

    fn load_file_text(&mut self, shared: &FileText, file: Arc<PathBuf>, report: &mut Report) {
        // The common subset of YAML through the fast reader; anything else through yaml_serde.
        if let Some(docs) = fast_yaml::parse(&shared.0) {
            // No merge key to apply without the text `<<` (the fast reader reads no escapes
            // that could spell it).
            let merge = shared.0.contains("<<");
            for (i, value) in docs.into_iter().enumerate() {
                let source = Source::new(file.clone(), i + 1);
                self.load_value(value, merge, source, shared, report);
            }
            return;
        }
        for (i, doc) in yaml_serde::Deserializer::from_str(&shared.0).enumerate() {
            let source = Source::new(file.clone(), i + 1);
            match Value::deserialize(doc) {
                Ok(value) => self.load_value(value, true, source, shared, report),
                // Stop at the first syntax error: the rest of this file is not read. This is what
                // keeps the parser from panicking. libyaml cannot resynchronise after an error
                // (an alias `*a` with no anchor `&a`, a bad indent): it resumes mid-document, and
                // yaml_serde panics ("unexpected end of mapping") on the unbalanced events it is
                // then given. A document that ends in an error is only cut short, and
                // deserialising it returns that error. Pinned by `tests::a_syntax_error_*` and by
                // the stable fuzzer (`tests/fuzz_mutate.rs`, target `config`), which no longer
                // catches anything for the loader.
                Err(e) => {
                    report.error(&source, "", ErrorKind::Syntax(e.to_string()));
                    break;
                }
            }
        }
    }

    fn load_value(
        &mut self,
        mut value: Value,
        merge: bool,
        source: Source,
        text: &FileText,
        report: &mut Report,
    ) {
        // `<<: *anchor` merge keys, as Kubernetes YAML tooling applies them.
        if let Err(e) = if merge { value.apply_merge() } else { Ok(()) } {
            report.error(&source, "", ErrorKind::Syntax(e.to_string()));
            return;
        }
        self.load_doc(value, source, text, report)
    }

    fn load_doc(&mut self, value: Value, mut source: Source, text: &FileText, report: &mut Report) {
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
            Some(m) => match deserialize(m.clone(), "metadata", &source, report) {
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
            .unwrap_or_else(|| self.default_namespace.to_owned());
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

        let redefined = self.seen.insert(id, source.clone());
        if let Some(first) = &redefined {
            report.warn(
                &source,
                "",
                ErrorKind::Redefined {
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    first: first.location(),
                },
            );
        }

        macro_rules! push {
            ($list:ident) => {{
                let Some(spec) = deserialize(spec, "spec", &source, report) else {
                    return;
                };
                let res = Resource {
                    namespace,
                    name,
                    labels: meta.labels,
                    annotations: meta.annotations,
                    source,
                    hash,
                    text: text.clone(),
                    spec,
                };
                let list = &mut self.resources.$list;
                // Only a redefinition needs the (linear) search for the one it replaces.
                let earlier = redefined
                    .is_some()
                    .then(|| {
                        list.iter()
                            .position(|r| r.namespace == res.namespace && r.name == res.name)
                    })
                    .flatten();
                match earlier {
                    Some(i) => list[i] = res,
                    None => list.push(res),
                }
            }};
        }
        match kind {
            Kind::Gateway => push!(gateways),
            Kind::VirtualService => push!(virtual_services),
            Kind::DestinationRule => push!(destination_rules),
            Kind::ServiceEntry => push!(service_entries),
        }
    }
}

/// Deserializes `value` into `T`, reporting type errors with their field path and unknown fields
/// as warnings (with the nearest known field name, as kubectl's warnings do).
fn deserialize<T: DeserializeOwned>(
    value: Value,
    prefix: &str,
    source: &Source,
    report: &mut Report,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    for (path, last) in unknown {
        let suggestion = suggest(&last);
        report.warn(
            source,
            join(prefix, &path),
            ErrorKind::UnknownField { suggestion },
        );
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            report.error(
                source,
                join(prefix, &path),
                ErrorKind::Type(e.into_inner().to_string()),
            );
            None
        }
    }
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
