//! Config diagnostics: where a problem is (file, document, resource, field) and what it is.
//! May not touch: runtime types. Shared by loading (`config`) and validation (`compile`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::Kind;

/// Where a resource came from: the file, the document inside it and the resource identity.
///
/// Cheap to clone (the file name is shared), so every compiled object can keep one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: Arc<PathBuf>,
    /// 1-based index of the YAML document in the file (every `---` counts, empty ones too).
    pub doc: usize,
    /// `None` until the document's kind and name are known (syntax errors, bad metadata).
    pub resource: Option<ResourceId>,
}

/// `(kind, namespace, name)`: the identity of a resource, as in kubectl.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// One problem found in the config. Display is a single line:
/// `vs.yaml#2 VirtualService default/reviews: spec.http[1].route[0].weight: weight must be >= 0, got -5`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub source: Source,
    /// Dotted path into the document (`spec.http[0].match[1].uri.regex`); empty for the whole document.
    pub field: String,
    pub kind: ErrorKind,
}

/// What is wrong. Each variant carries the values involved, never a free-form message, except
/// where the text comes from another library (YAML parser, regex compiler).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot read: {0}")]
    Io(String),
    #[error("YAML syntax error: {0}")]
    Syntax(String),
    #[error("{0}")]
    Type(String),
    #[error("unknown field{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownField { suggestion: Option<String> },
    #[error("is required")]
    Missing,
    #[error("{what}: not supported by meshgate yet{}", if *.ignored { "; ignored" } else { "" })]
    NotYetSupported { what: String, ignored: bool },
    #[error("{what} is not supported at a gateway: {why}")]
    Unsupported { what: String, why: &'static str },
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("{value} is out of range ({min}..={max})")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("duplicate {what} {value:?}{}", first.as_ref().map(|f| format!(" (first at {f})")).unwrap_or_default())]
    Duplicate {
        what: &'static str,
        value: String,
        first: Option<String>,
    },
    #[error("{0}")]
    Conflict(ConflictKind),
    #[error("invalid regex {pattern:?}: {reason}")]
    BadRegex { pattern: String, reason: String },
    #[error("invalid duration {value:?}: {why}")]
    BadDuration { value: String, why: &'static str },
    #[error("gateway {gateway:?} (resolved to {resolved}) does not exist")]
    UnknownGateway { gateway: String, resolved: String },
    #[error("Gateway {gateway} is skipped because of its errors; not served on it")]
    SkippedGateway { gateway: String },
    #[error("subset {subset:?} of host {host} is not defined by any DestinationRule; requests to it get 503 (NC)")]
    UnknownSubset { host: String, subset: String },
    #[error("total weight of destinations is 0")]
    ZeroWeights,
    #[error("{kind} {namespace}/{name} is defined again here; this definition replaces the one in {first}")]
    Redefined {
        kind: Kind,
        namespace: String,
        name: String,
        first: String,
    },
    #[error("unknown kind {kind:?} (apiVersion {api_version}); skipped")]
    UnknownKind { kind: String, api_version: String },
    #[error("{0}")]
    Note(String),
}

/// Pairs of fields that may not be used together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictKind {
    pub a: &'static str,
    pub b: &'static str,
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` and `{}` cannot be used together", self.a, self.b)
    }
}

/// The result of looking at a config: errors reject it, warnings do not.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

// === impl Source ===

impl Source {
    pub fn new(file: Arc<PathBuf>, doc: usize) -> Self {
        Source {
            file,
            doc,
            resource: None,
        }
    }

    pub fn location(&self) -> String {
        format!("{}#{}", self.file.display(), self.doc)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file.display(), self.doc)?;
        if let Some(id) = &self.resource {
            write!(f, " {id}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

// === impl ConfigError ===

impl ConfigError {
    pub fn new(source: &Source, field: impl Into<String>, kind: ErrorKind) -> Self {
        ConfigError {
            source: source.clone(),
            field: field.into(),
            kind,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.source, self.kind)
        } else {
            write!(f, "{}: {}: {}", self.source, self.field, self.kind)
        }
    }
}

impl std::error::Error for ConfigError {}

// === impl Report ===

impl Report {
    pub fn error(&mut self, source: &Source, field: impl Into<String>, kind: ErrorKind) {
        self.errors.push(ConfigError::new(source, field, kind));
    }

    pub fn warn(&mut self, source: &Source, field: impl Into<String>, kind: ErrorKind) {
        self.warnings.push(ConfigError::new(source, field, kind));
    }

    pub fn extend(&mut self, other: Report) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}
