//! Per-resource isolation: one bad resource never takes the others down.
//!
//! `admit` turns what the loader read into the set of resources that is served, as Istio does
//! (its admission webhook rejects a bad resource, the previous version of it stays, the rest is
//! served):
//!
//! 1. A resource with an error is *skipped*, unless the last good config (on reload) had a version
//!    of it: then that version is *kept* in its place.
//! 2. A file that cannot be parsed (YAML syntax, unreadable) keeps, on reload, the last good
//!    version of every resource it held that the new read did not produce; so does a resource
//!    whose document failed to load.
//! 3. What depends on a skipped resource: a VirtualService bound to a skipped Gateway is served on
//!    its other Gateways (a warning names the skipped one); a reference to a Gateway that does not
//!    exist at all is the VirtualService's own error. A skipped DestinationRule or ServiceEntry is
//!    as if absent: routes to its host use the defaults, and subsets it defined are unknown (503
//!    NC, with a warning), as they would be in Istio.
//!
//! Every error is still reported. `--strict` bypasses this module (all or nothing).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ConfigError, Kind, Report, Resource, ResourceId, Resources, Served};

use super::{check, listeners, Compiled, Options, RegexCache};

/// What `admit` decided.
#[derive(Debug)]
pub struct Admitted {
    /// The resources served (kept versions included): the next reload's "last good" config
    /// (as [`Served`]).
    pub resources: Resources,
    pub compiled: Compiled,
    /// Every error (load and validation) and the warnings of what is served.
    pub report: Report,
    /// Resources not served at the version on disk, in identity order.
    pub skipped: Vec<Skipped>,
}

/// A resource not served as written, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub id: ResourceId,
    /// `true`: the last good version of it is served instead; `false`: nothing is.
    pub kept_previous: bool,
    /// Its errors, one line each.
    pub errors: Vec<String>,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.kept_previous {
            "its last good version is served"
        } else {
            "skipped"
        };
        write!(f, "{}: {what} ({} error(s))", self.id, self.errors.len())
    }
}

/// Decides what is served from `loaded` (with its load report) and, on reload, `previous` (the
/// last good config). `Err` only for an error no resource can be blamed for (a bug).
pub fn admit(
    loaded: Resources,
    load_report: Report,
    previous: Option<&Served>,
    opts: &Options,
    reuse: &RegexCache,
) -> Result<Admitted, Box<ConfigError>> {
    let mut resources = loaded;
    let mut errors: Vec<ConfigError> = load_report.errors;
    let load_warnings = load_report.warnings;
    let empty = Served::default();
    let previous = previous.unwrap_or(&empty);
    // Identities with an error, and whether their last good version was put back.
    let mut failed: BTreeMap<ResourceId, bool> = BTreeMap::new();

    // Gateways that exist on disk: references to them are not dangling even when skipped.
    let mut gateway_names: HashSet<String> = HashSet::new();
    // Files that could not be read whole, and documents that did not load.
    let mut broken_files: HashSet<Arc<PathBuf>> = HashSet::new();
    for e in &errors {
        match &e.source.resource {
            Some(id) => {
                failed.insert(id.clone(), false);
                if id.kind == Kind::Gateway {
                    gateway_names.insert(format!("{}/{}", id.namespace, id.name));
                }
            }
            None => {
                broken_files.insert(e.source.file.clone());
            }
        }
    }
    let present: HashSet<ResourceId> = resources.identities().map(|(id, _)| id).collect();
    for (id, file) in previous.files() {
        if present.contains(id) {
            continue;
        }
        if failed.contains_key(id) || broken_files.contains(file) {
            put(&mut resources, previous, id);
            failed.insert(id.clone(), true);
        }
    }

    // Validate; skip (or put back) what fails; again until nothing fails. Each round removes or
    // replaces at least one resource, and a put-back version is never replaced again.
    let mut put_back: HashSet<ResourceId> = failed
        .iter()
        .filter(|(_, kept)| **kept)
        .map(|(id, _)| id.clone())
        .collect();
    for g in &resources.gateways {
        gateway_names.insert(format!("{}/{}", g.namespace, g.name));
    }
    let mut reuse = reuse.clone();
    loop {
        let skipped_gateways: HashSet<String> = {
            let served: HashSet<String> = resources
                .gateways
                .iter()
                .map(|g| format!("{}/{}", g.namespace, g.name))
                .collect();
            gateway_names.difference(&served).cloned().collect()
        };
        let (checked, mut report) = check(&resources, opts, &skipped_gateways, &reuse);
        if let Some(e) = report.errors.iter().find(|e| e.source.resource.is_none()) {
            // `check` attributes every error to a resource; one that is not cannot be isolated.
            return Err(Box::new(e.clone()));
        }
        let mut bad: BTreeMap<ResourceId, Vec<ConfigError>> = BTreeMap::new();
        for e in report.errors.drain(..) {
            if let Some(id) = e.source.resource.clone() {
                bad.entry(id).or_default().push(e);
            }
        }
        if bad.is_empty() {
            let mut out = Report {
                errors,
                warnings: load_warnings,
            };
            out.warnings.extend(report.warnings);
            let compiled = listeners::build(&resources, checked, opts, &mut out);
            let skipped = failed
                .into_iter()
                .map(|(id, kept_previous)| Skipped {
                    errors: out
                        .errors
                        .iter()
                        .filter(|e| e.source.resource.as_ref() == Some(&id))
                        .map(|e| e.to_string())
                        .collect(),
                    id,
                    kept_previous,
                })
                .collect();
            return Ok(Admitted {
                resources,
                compiled,
                report: out,
                skipped,
            });
        }
        // The next round takes this round's regexes (the served config's it used, and new ones).
        reuse = checked.regexes;
        for (id, errs) in bad {
            let is_put_back = put_back.contains(&id);
            errors.extend(errs);
            remove(&mut resources, &id);
            let can_put_back = !is_put_back && previous.contains(&id);
            if can_put_back {
                put(&mut resources, previous, &id);
                put_back.insert(id.clone());
            }
            failed.insert(id, can_put_back);
        }
    }
}

fn is<T>(r: &Resource<T>, id: &ResourceId) -> bool {
    r.namespace == id.namespace && r.name == id.name
}

fn remove(res: &mut Resources, id: &ResourceId) {
    match id.kind {
        Kind::Gateway => res.gateways.retain(|r| !is(r, id)),
        Kind::VirtualService => res.virtual_services.retain(|r| !is(r, id)),
        Kind::DestinationRule => res.destination_rules.retain(|r| !is(r, id)),
        Kind::ServiceEntry => res.service_entries.retain(|r| !is(r, id)),
    }
}

/// Puts the served version of `id` (read again) into `res`, where the removed one stood or at
/// the end.
fn put(res: &mut Resources, previous: &Served, id: &ResourceId) {
    let Some(from) = previous.read_back(id) else {
        return;
    };
    let from = &from;
    fn copy<T: Clone>(to: &mut Vec<Resource<T>>, from: &[Resource<T>], id: &ResourceId) {
        let Some(r) = from.iter().find(|r| is(r, id)) else {
            return;
        };
        match to.iter().position(|x| is(x, id)) {
            Some(i) => to[i] = r.clone(),
            None => to.push(r.clone()),
        }
    }
    match id.kind {
        Kind::Gateway => copy(&mut res.gateways, &from.gateways, id),
        Kind::VirtualService => copy(&mut res.virtual_services, &from.virtual_services, id),
        Kind::DestinationRule => copy(&mut res.destination_rules, &from.destination_rules, id),
        Kind::ServiceEntry => copy(&mut res.service_entries, &from.service_entries, id),
    }
}
