//! What changed between two loaded configs, by resource identity and content hash.

use std::collections::BTreeMap;
use std::fmt;

use super::{ResourceId, Resources, Served};

/// Resources added, removed and changed from one config to the next.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<ResourceId>,
    pub removed: Vec<ResourceId>,
    pub changed: Vec<ResourceId>,
}

impl Diff {
    /// From the config served to the one just loaded.
    pub fn between(old: &Served, new: &Resources) -> Diff {
        let old: BTreeMap<ResourceId, u64> = old.identities().collect();
        let new: BTreeMap<ResourceId, u64> = new.identities().collect();
        let mut diff = Diff::default();
        for (id, hash) in &new {
            match old.get(id) {
                None => diff.added.push(id.clone()),
                Some(h) if h != hash => diff.changed.push(id.clone()),
                Some(_) => {}
            }
        }
        diff.removed = old
            .keys()
            .filter(|id| !new.contains_key(*id))
            .cloned()
            .collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// `+1 -0 ~2 (added: VirtualService a/b; changed: ...)`, listing at most a few names per group.
impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{} -{} ~{}",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        )?;
        let mut groups = Vec::new();
        for (label, ids) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if ids.is_empty() {
                continue;
            }
            let mut names: Vec<String> = ids.iter().take(5).map(|id| id.to_string()).collect();
            if ids.len() > 5 {
                names.push(format!("and {} more", ids.len() - 5));
            }
            groups.push(format!("{label}: {}", names.join(", ")));
        }
        if !groups.is_empty() {
            write!(f, " ({})", groups.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    use super::*;

    const A: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.example], resolution: NONE}\n";
    const B: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b}\nspec: {hosts: [b.example], resolution: NONE}\n";
    const B2: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b}\nspec: {hosts: [b2.example], resolution: NONE}\n";

    fn load(text: &str) -> Resources {
        load_str(text, "t.yaml", "default").0
    }

    #[test]
    fn diff_with_itself_is_empty() {
        let r = load(&format!("{A}---\n{B}"));
        assert!(Diff::between(&Served::new(&r, "default"), &r).is_empty());
        assert_eq!(r.fingerprint(), load(&format!("{A}---\n{B}")).fingerprint());
    }

    #[test]
    fn diff_from_empty_lists_everything() {
        let r = load(&format!("{A}---\n{B}"));
        let d = Diff::between(&Served::default(), &r);
        assert_eq!(d.added.len(), 2);
        assert!(d.removed.is_empty() && d.changed.is_empty());
    }

    #[test]
    fn added_removed_changed() {
        let old = load(&format!("{A}---\n{B}"));
        let new = load(B2);
        let d = Diff::between(&Served::new(&old, "default"), &new);
        assert_eq!(
            d.to_string(),
            "+0 -1 ~1 (removed: ServiceEntry default/a; changed: ServiceEntry default/b)"
        );
        assert_ne!(old.fingerprint(), new.fingerprint());
    }
}
