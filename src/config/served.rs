//! [`Served`]: what a reload needs of the config being served, without its parsed model: each
//! resource's identity, content hash, and the text of the file version it was read from
//! (LZ4-compressed). A reload compares against the hashes, and reads a resource again from that
//! text when its new version is refused (`compile::admit` keeps the last good version). With
//! 10,000 routes the parsed model was ~15 MB held for the rare put-back; the file texts are
//! 2.9 MB, compressed ~0.5 MB.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::load::read_again;
use super::{FileText, Kind, ResourceId, Resources};

/// The served config's resources, in load order.
#[derive(Debug, Default)]
pub struct Served {
    default_namespace: Box<str>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    id: ResourceId,
    hash: u64,
    file: Arc<PathBuf>,
    /// The file's text, compressed (shared by the resources of one file version).
    packed: Arc<[u8]>,
}

impl Served {
    /// `default_namespace`: the one `resources` were loaded with (reading again uses it too).
    pub fn new(resources: &Resources, default_namespace: &str) -> Served {
        // One compressed copy per file version (its resources share the text).
        let mut packed: HashMap<*const u8, Arc<[u8]>> = HashMap::new();
        let entries = resources
            .each()
            .map(|(id, r)| Entry {
                id,
                hash: r.hash,
                file: r.source.file.clone(),
                packed: packed
                    .entry(r.text.0.as_ptr())
                    .or_insert_with(|| lz4_flex::compress_prepend_size(r.text.0.as_bytes()).into())
                    .clone(),
            })
            .collect();
        Served {
            default_namespace: default_namespace.into(),
            entries,
        }
    }

    /// Every resource's identity with its content hash, as [`Resources::identities`].
    pub fn identities(&self) -> impl Iterator<Item = (ResourceId, u64)> + '_ {
        self.entries.iter().map(|e| (e.id.clone(), e.hash))
    }

    /// Every resource's identity and the file it came from.
    pub fn files(&self) -> impl Iterator<Item = (&ResourceId, &Arc<PathBuf>)> + '_ {
        self.entries.iter().map(|e| (&e.id, &e.file))
    }

    pub fn contains(&self, id: &ResourceId) -> bool {
        self.entries.iter().any(|e| &e.id == id)
    }

    /// `id` as served, read again from its file's text: a `Resources` holding it alone, or
    /// `None` when it is not served.
    pub fn read_back(&self, id: &ResourceId) -> Option<Resources> {
        let e = self.entries.iter().find(|e| &e.id == id)?;
        // Compressed here from a `str`: neither step can fail but on a bug, and then the
        // resource is as good as not served (the caller skips it).
        let text = lz4_flex::decompress_size_prepended(&e.packed).ok()?;
        let text = FileText(Arc::from(String::from_utf8(text).ok()?));
        let mut one = read_again(&text, e.file.clone(), &self.default_namespace);
        let is = |kind: Kind, ns: &str, name: &str| {
            kind == id.kind && ns == id.namespace && name == id.name
        };
        one.gateways
            .retain(|r| is(Kind::Gateway, &r.namespace, &r.name));
        one.virtual_services
            .retain(|r| is(Kind::VirtualService, &r.namespace, &r.name));
        one.destination_rules
            .retain(|r| is(Kind::DestinationRule, &r.namespace, &r.name));
        one.service_entries
            .retain(|r| is(Kind::ServiceEntry, &r.namespace, &r.name));
        (!one.is_empty()).then_some(one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const TEXT: &str = "\u{feff}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec: {hosts: [a.example], http: [{route: [{destination: {host: x}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: other}
spec: {hosts: [b.example], http: [{route: [{destination: {host: y}}]}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [x], resolution: NONE}
";

    fn vs(ns: &str, name: &str) -> ResourceId {
        ResourceId {
            kind: Kind::VirtualService,
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_served_resource_reads_back_as_it_was_loaded() {
        let (loaded, report) = load_str(TEXT, "one.yaml", "ns1");
        assert!(report.is_ok(), "{report:?}");
        let served = Served::new(&loaded, "ns1");
        assert!(served.contains(&vs("other", "b")));
        assert!(!served.contains(&vs("ns1", "b")));

        let back = served.read_back(&vs("other", "b")).unwrap();
        assert_eq!(back.len(), 1, "only the resource asked for");
        let (b, orig) = (&back.virtual_services[0], &loaded.virtual_services[1]);
        assert_eq!((b.namespace.as_str(), b.name.as_str()), ("other", "b"));
        assert_eq!(b.hash, orig.hash);
        assert_eq!(b.source.doc, 2);
        assert_eq!(b.spec.hosts, ["b.example"]);

        // The default namespace it was loaded with, and the same name in another kind apart.
        let a = served.read_back(&vs("ns1", "a")).unwrap();
        assert_eq!(a.virtual_services.len(), 1);
        assert!(a.service_entries.is_empty());
        assert!(served.read_back(&vs("ns1", "zzz")).is_none());
    }

    #[test]
    fn files_and_identities_follow_load_order() {
        let (loaded, _) = load_str(TEXT, "one.yaml", "ns1");
        let served = Served::new(&loaded, "ns1");
        let ids: Vec<(ResourceId, u64)> = served.identities().collect();
        assert_eq!(ids, loaded.identities().collect::<Vec<_>>());
        assert!(served
            .files()
            .all(|(_, f)| f.as_path() == std::path::Path::new("one.yaml")));
    }
}
