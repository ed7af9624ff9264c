//! Bounded background load: N keep-alive clients sending GETs until stopped, counting replies
//! that pass a check and everything else (bad status, transport error).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Client, Reply};

/// Each client stops after this many requests even if nobody calls `stop`.
const MAX_PER_CLIENT: usize = 200_000;

pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` connections sending `GET path` with `Host: host`; a reply counts as ok
    /// when `check` accepts it.
    pub fn start(
        addr: SocketAddr,
        clients: usize,
        host: &'static str,
        path: &'static str,
        check: fn(&Reply) -> bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let c = Client::http1(addr);
                    for _ in 0..MAX_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match c.try_get(host, path).await {
                            Ok(r) if check(&r) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(r) => {
                                eprintln!("bad reply: {} {}", r.status, r.body);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(e) => {
                                eprintln!("request error: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            clients,
        }
    }

    /// Stops every client, waits for them, returns `(ok, failed)`.
    pub async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.await.expect("load client panicked");
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
