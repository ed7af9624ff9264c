//! The real gateway, in process, on 127.0.0.1 with ephemeral ports, config from a temp dir.

use std::net::SocketAddr;

use meshgate::{Gateway, Settings};

pub struct TestGateway {
    pub gw: Gateway,
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    /// Writes `yaml` to `<tmp>/config.yaml` and starts the gateway on it. Panics on config errors.
    pub async fn start(yaml: &str) -> TestGateway {
        Self::try_start(yaml)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    pub async fn try_start(yaml: &str) -> Result<TestGateway, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
        let mut settings = Settings::new(dir.path());
        settings.bind = "127.0.0.1".parse().unwrap();
        settings.ephemeral_ports = true;
        match Gateway::start(settings).await {
            Ok(gw) => Ok(TestGateway { gw, dir }),
            Err(meshgate::StartError::Config(report)) => Err(report
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")),
            Err(e) => Err(e.to_string()),
        }
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
}
