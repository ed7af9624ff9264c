//! The overload manager: the process's resident memory against two thresholds, as Envoy's
//! overload manager does with its heap monitor. Past the first (`shed`), keep-alive is off and
//! new requests are answered `503 envoy overloaded` (flag `OM`) without being routed; past the
//! second (`refuse`), new connections are accepted and closed at once. Requests already being
//! served finish. A sampler thread reads `/proc/self/statm` ten times a second, and the accept
//! loops sample too, once every `SAMPLE_EVERY_ACCEPTS` connections: a flood that arrives within
//! one tick would otherwise all be let in before the level changes. The request path reads one
//! atomic.
//! May not touch: routing, upstreams.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How often resident memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How many accepted connections between two samples taken by the accept loops. Reading
/// `statm` costs a few microseconds, so this adds well under a microsecond per connection, and
/// bounds how far a burst of new connections can overshoot the refuse threshold.
const SAMPLE_EVERY_ACCEPTS: u32 = 16;

/// Memory thresholds in bytes of resident memory (`None`: off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverloadLimits {
    /// Past it: keep-alive off, new requests shed with 503 `OM`.
    pub shed_memory: Option<u64>,
    /// Past it: new connections refused (accepted and closed).
    pub refuse_memory: Option<u64>,
}

/// Set while any overload manager in the process is past its shed threshold: idle runtime
/// threads then hand freed memory back to the OS at once (`memory_pressure`), so the level can
/// ease as soon as the connections that raised it are gone, not at the next periodic collect.
static PRESSURE: AtomicBool = AtomicBool::new(false);

/// True while memory is past a shed threshold (see `PRESSURE`).
pub fn memory_pressure() -> bool {
    PRESSURE.load(Ordering::Relaxed)
}

/// What the overload manager asks of the request path now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Normal = 0,
    Shed = 1,
    Refuse = 2,
}

/// The current level, written by the sampler.
#[derive(Debug, Default)]
pub struct Overload {
    level: AtomicU8,
    /// Set by `start` when a threshold is on.
    limits: OnceLock<OverloadLimits>,
    accepts: AtomicU32,
}

impl Overload {
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// Called by the accept loops for every new connection: true when memory is to be sampled
    /// now (`sample_now`), once every `SAMPLE_EVERY_ACCEPTS` connections when a threshold is on.
    pub fn sample_due(&self) -> bool {
        self.limits.get().is_some()
            && self
                .accepts
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(SAMPLE_EVERY_ACCEPTS)
    }

    /// Samples memory now and updates the level (a no-op when no threshold is on).
    pub fn sample_now(&self) {
        if let Some(limits) = self.limits.get() {
            sample(*limits, self);
        }
    }

    /// Sets the level; returns the one before.
    fn set(&self, level: Level) -> Level {
        Level::from_u8(self.level.swap(level as u8, Ordering::Relaxed))
    }
}

impl Level {
    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Normal,
            1 => Level::Shed,
            _ => Level::Refuse,
        }
    }
}

impl OverloadLimits {
    pub fn is_off(&self) -> bool {
        self.shed_memory.is_none() && self.refuse_memory.is_none()
    }

    /// The level for `resident` bytes.
    pub fn level(&self, resident: u64) -> Level {
        if self.refuse_memory.is_some_and(|m| resident >= m) {
            Level::Refuse
        } else if self.shed_memory.is_some_and(|m| resident >= m) {
            Level::Shed
        } else {
            Level::Normal
        }
    }
}

/// Samples once now (so the level holds from the first connection), then starts the sampler
/// thread, which ends with `overload`.
pub fn start(limits: OverloadLimits, overload: &Arc<Overload>) {
    if limits.is_off() {
        return;
    }
    let _ = overload.limits.set(limits);
    sample(limits, overload);
    let weak: Weak<Overload> = Arc::downgrade(overload);
    let spawned = std::thread::Builder::new()
        .name("overload".into())
        .spawn(move || loop {
            std::thread::sleep(SAMPLE_EVERY);
            match weak.upgrade() {
                Some(o) => sample(limits, &o),
                None => return,
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "overload manager not started");
    }
}

fn sample(limits: OverloadLimits, overload: &Overload) {
    let Some(resident) = resident_bytes() else {
        return;
    };
    let level = limits.level(resident);
    metrics::gauge!("meshgate_overload_resident_bytes").set(resident as f64);
    let was = overload.set(level);
    if was != level {
        PRESSURE.store(level >= Level::Shed, Ordering::Relaxed);
        metrics::gauge!("meshgate_overload_level").set(level as u8 as f64);
        if level > was {
            tracing::warn!(?level, resident, "overloaded: memory past a threshold");
        } else {
            tracing::info!(?level, resident, "overload eased");
        }
    }
}

/// Resident memory of this process (`/proc/self/statm`, pages × 4 KiB).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Parses a byte count: `1048576`, `512Ki`, `900Mi`, `2Gi`, `500M`, `1G` (Kubernetes' quantity
/// suffixes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 900Mi)"))?;
    let mult: u64 = match unit {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use Ki, Mi, Gi, K, M or G)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_thresholds() {
        let l = OverloadLimits {
            shed_memory: Some(100),
            refuse_memory: Some(200),
        };
        assert_eq!(l.level(99), Level::Normal);
        assert_eq!(l.level(100), Level::Shed);
        assert_eq!(l.level(250), Level::Refuse);
        let only_refuse = OverloadLimits {
            shed_memory: None,
            refuse_memory: Some(200),
        };
        assert_eq!(only_refuse.level(150), Level::Normal);
        assert!(OverloadLimits::default().is_off());
    }

    #[test]
    fn byte_counts_take_kubernetes_suffixes() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("900Mi"), Ok(900 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert!(parse_bytes("12Qi").is_err());
        assert!(parse_bytes("Mi").is_err());
        assert!(parse_bytes("99999999999999Gi").is_err());
    }

    #[test]
    fn this_process_has_resident_memory() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
