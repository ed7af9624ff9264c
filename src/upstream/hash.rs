//! Consistent hashing math: a stable 64-bit hash, Envoy's ring hash and Maglev tables.
//! Pure functions over endpoint keys and weights. May not touch: requests, endpoint state.
//!
//! The hash is FNV-1a finished with MurmurHash3's `fmix64`: stable across processes and releases,
//! so several meshgate replicas send one key to the same endpoint. It is not Envoy's xxHash, so
//! the endpoint a given key lands on differs from Envoy's (no client can rely on that mapping).

/// Envoy's `maximum_ring_size` default.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Lookups tried in a Maglev table before falling back to a scan when the owner is unusable.
const MAGLEV_PROBES: u64 = 32;

/// A stable 64-bit hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finaliser: spreads every input bit over the output.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A lookup table from a request hash to an endpoint index.
#[derive(Debug)]
pub enum HashTable {
    /// Sorted `(point, endpoint index)`; a hash belongs to the first point at or after it.
    Ring(Vec<(u64, u32)>),
    /// Maglev: `table[hash % len]` is the endpoint index.
    Maglev(Vec<u32>),
}

// === impl HashTable ===

impl HashTable {
    /// Envoy's ring: every endpoint gets points in proportion to its weight, at least
    /// `min_size` points in total (capped at 8M).
    pub fn ring(hosts: &[(String, u32)], min_size: u64) -> HashTable {
        if hosts.is_empty() {
            return HashTable::Ring(Vec::new());
        }
        let total: f64 = hosts.iter().map(|(_, w)| f64::from((*w).max(1))).sum();
        let min_norm = hosts
            .iter()
            .map(|(_, w)| f64::from((*w).max(1)) / total)
            .fold(f64::MAX, f64::min);
        let scale =
            ((min_norm * min_size.max(1) as f64).ceil() / min_norm).min(MAX_RING_SIZE as f64);
        let mut ring = Vec::new();
        for (i, (key, w)) in hosts.iter().enumerate() {
            let points = ((f64::from((*w).max(1)) / total) * scale).ceil() as u64;
            for p in 0..points {
                ring.push((hash_bytes(format!("{key}_{p}").as_bytes()), i as u32));
            }
        }
        ring.sort_unstable();
        HashTable::Ring(ring)
    }

    /// Maglev with Envoy's weighting: a host of half the largest weight fills every other round.
    /// `size` should be prime (validation enforces it for configured sizes).
    pub fn maglev(hosts: &[(String, u32)], size: u64) -> HashTable {
        let size = size.max(1);
        if hosts.is_empty() {
            return HashTable::Maglev(Vec::new());
        }
        struct Build {
            offset: u64,
            skip: u64,
            next: u64,
            weight: u64,
            target: u64,
        }
        let max_w = hosts
            .iter()
            .map(|(_, w)| u64::from((*w).max(1)))
            .max()
            .unwrap_or(1);
        let mut builds: Vec<Build> = hosts
            .iter()
            .map(|(key, w)| {
                let h = hash_bytes(key.as_bytes());
                Build {
                    offset: h % size,
                    skip: fmix64(h ^ 0x9e37_79b9_7f4a_7c15) % (size - 1).max(1) + 1,
                    next: 0,
                    weight: u64::from((*w).max(1)),
                    target: 0,
                }
            })
            .collect();
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        let mut iteration = 0u64;
        while filled < size {
            for (j, b) in builds.iter_mut().enumerate() {
                if filled == size {
                    break;
                }
                if iteration * b.weight < b.target {
                    continue;
                }
                b.target += max_w;
                let mut c = (b.offset + b.skip * b.next) % size;
                while table[c as usize] != u32::MAX {
                    b.next += 1;
                    c = (b.offset + b.skip * b.next) % size;
                }
                table[c as usize] = j as u32;
                b.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        HashTable::Maglev(table)
    }

    /// The endpoint index owning `hash`, or the nearest one for which `usable` holds: the next
    /// points clockwise on a ring (what Envoy's rebuilt ring gives), re-probes in a Maglev table.
    pub fn lookup(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            HashTable::Ring(ring) => {
                if ring.is_empty() {
                    return None;
                }
                let start = ring.partition_point(|(p, _)| *p < hash);
                (0..ring.len())
                    .map(|k| ring[(start + k) % ring.len()].1 as usize)
                    .find(|&i| usable(i))
            }
            HashTable::Maglev(table) => {
                if table.is_empty() {
                    return None;
                }
                let len = table.len() as u64;
                (0..MAGLEV_PROBES)
                    .map(|k| table[(fmix64(hash.wrapping_add(k)) % len) as usize] as usize)
                    .find(|&i| usable(i))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:80"), 1)).collect()
    }

    fn owners(t: &HashTable, keys: u64) -> Vec<usize> {
        (0..keys)
            .map(|k| t.lookup(hash_bytes(&k.to_le_bytes()), |_| true).unwrap())
            .collect()
    }

    #[test]
    fn hash_is_stable() {
        // Fixed value: the mapping must not change between releases.
        assert_eq!(hash_bytes(b"user-42"), 11_787_383_432_861_261_453);
        assert_ne!(hash_bytes(b"user-42"), hash_bytes(b"user-43"));
        assert_eq!(hash_bytes(b""), fmix64(0xcbf2_9ce4_8422_2325));
    }

    #[test]
    fn ring_spreads_keys_evenly_and_by_weight() {
        let t = HashTable::ring(&hosts(4), 1024);
        let o = owners(&t, 20_000);
        for h in 0..4 {
            let n = o.iter().filter(|&&x| x == h).count();
            // Each host owns ~25 %; ring hash with 256 points/host stays within ±40 %.
            assert!((3_000..=7_000).contains(&n), "host {h} got {n}");
        }
        let weighted = HashTable::ring(&[("a".into(), 3), ("b".into(), 1)], 1024);
        let a = owners(&weighted, 20_000)
            .iter()
            .filter(|&&x| x == 0)
            .count();
        assert!((13_000..=17_000).contains(&a), "a got {a}");
    }

    #[test]
    fn removing_a_host_moves_only_its_keys() {
        for (name, build) in [
            (
                "ring",
                HashTable::ring as fn(&[(String, u32)], u64) -> HashTable,
            ),
            ("maglev", HashTable::maglev),
        ] {
            let size = if name == "ring" { 1024 } else { 65537 };
            let all = hosts(5);
            let before = owners(&build(&all, size), 10_000);
            // Remove host 2: indices above it shift down by one.
            let fewer: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, h)| h.clone())
                .collect();
            let after: Vec<usize> = owners(&build(&fewer, size), 10_000)
                .into_iter()
                .map(|i| if i >= 2 { i + 1 } else { i })
                .collect();
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            let owned_by_removed = before.iter().filter(|&&b| b == 2).count();
            let stayed_elsewhere = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| **b != 2 && b == a)
                .count();
            eprintln!(
                "{name}: {moved} of 10000 keys moved; the removed host had {owned_by_removed}"
            );
            // Every key of the removed host moves; of the others, most stay. Both tables rebuild
            // with more entries per remaining host (as Envoy's do), so a little more than 1/N moves.
            assert!(moved >= owned_by_removed, "{name}");
            assert!(
                (1_500..=3_300).contains(&moved),
                "{name}: {moved} keys moved"
            );
            assert!(
                stayed_elsewhere >= 10_000 - owned_by_removed - 1_500,
                "{name}: {stayed_elsewhere}"
            );
        }
    }

    #[test]
    fn maglev_fills_the_table_by_weight() {
        let t = HashTable::maglev(&[("a".into(), 2), ("b".into(), 1)], 65537);
        let HashTable::Maglev(table) = &t else {
            panic!("not maglev")
        };
        let a = table.iter().filter(|&&i| i == 0).count();
        assert!((43_000..=44_400).contains(&a), "a has {a} of 65537 slots");
    }

    #[test]
    fn lookup_skips_unusable_hosts() {
        let t = HashTable::ring(&hosts(3), 1024);
        for k in 0..1000u64 {
            let h = hash_bytes(&k.to_le_bytes());
            let owner = t.lookup(h, |_| true).unwrap();
            let other = t.lookup(h, |i| i != owner).unwrap();
            assert_ne!(owner, other);
        }
        assert_eq!(t.lookup(1, |_| false), None);
    }
}
