//! The real gateway, in process, on 127.0.0.1 with ephemeral ports, config from a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshgate::{Gateway, Settings, Status};

pub struct TestGateway {
    pub gw: Arc<Gateway>,
    pub dir: tempfile::TempDir,
    pub watcher: Option<meshgate::reload::Watcher>,
}

/// How long a test waits for a reload to show up before failing.
pub const RELOAD_WAIT: Duration = Duration::from_secs(20);

impl TestGateway {
    /// Writes `yaml` to `<tmp>/config.yaml` and starts the gateway on it. Panics on config errors.
    pub async fn start(yaml: &str) -> TestGateway {
        Self::try_start(yaml)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Like `start`, and watches the config directory for changes.
    pub async fn start_watching(yaml: &str) -> TestGateway {
        Self::start(yaml).await.watching()
    }

    pub async fn try_start(yaml: &str) -> Result<TestGateway, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
        Self::try_start_in(dir).await
    }

    /// Starts on a directory the caller has filled, watching it for changes.
    pub async fn start_watching_in(dir: tempfile::TempDir) -> TestGateway {
        Self::try_start_in(dir)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
            .watching()
    }

    /// Starts watching the config directory (the default debounce).
    pub fn watching(mut self) -> TestGateway {
        let w = meshgate::reload::watch(
            self.gw.clone(),
            self.dir.path(),
            meshgate::reload::DEFAULT_DEBOUNCE,
        )
        .expect("watch the config dir");
        self.watcher = Some(w);
        self
    }

    pub async fn try_start_in(dir: tempfile::TempDir) -> Result<TestGateway, String> {
        Self::try_start_with(dir, |_| {}).await
    }

    /// Starts on a directory the caller has filled, with settings the caller adjusts.
    pub async fn try_start_with(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut Settings),
    ) -> Result<TestGateway, String> {
        let mut settings = Settings::new(dir.path());
        settings.bind = "127.0.0.1".parse().unwrap();
        settings.ephemeral_ports = true;
        adjust(&mut settings);
        match Gateway::start(settings).await {
            Ok(gw) => Ok(TestGateway {
                gw: Arc::new(gw),
                dir,
                watcher: None,
            }),
            Err(meshgate::StartError::Config(report)) => Err(report
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Starts the admin, health and stats servers (ephemeral ports on 127.0.0.1).
    pub async fn with_ops(self) -> TestGateway {
        self.gw
            .start_ops()
            .await
            .expect("start the operations servers");
        self
    }

    /// Where an operations server listens (after `with_ops`).
    pub fn ops(&self, which: meshgate::OpsPort) -> SocketAddr {
        self.gw
            .ops_addr(which)
            .expect("operations server not started")
    }

    /// Where Gateway port 8080 is served.
    pub fn addr(&self) -> SocketAddr {
        self.port(8080)
    }

    pub fn port(&self, gateway_port: u16) -> SocketAddr {
        self.gw
            .addr(gateway_port)
            .expect("no listener for that Gateway port")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Waits (bounded) until the status satisfies `pred`; returns it.
    pub async fn wait_status(&self, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
        let mut rx = self.gw.status();
        let waited = tokio::time::timeout(RELOAD_WAIT, async {
            loop {
                {
                    let st = rx.borrow_and_update();
                    if pred(&st) {
                        return st.clone();
                    }
                }
                rx.changed().await.expect("gateway dropped");
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            panic!(
                "timed out waiting for {what}; status: {:?}",
                *self.gw.status().borrow()
            )
        })
    }

    /// Waits until the active config generation reaches `generation`.
    pub async fn wait_generation(&self, generation: u64) -> Status {
        self.wait_status(&format!("generation {generation}"), |s| {
            s.generation >= generation
        })
        .await
    }
}
