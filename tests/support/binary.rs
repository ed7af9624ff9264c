//! The real `meshgate` binary as a child process: started on a config, its Gateway port 8080 on an
//! ephemeral 127.0.0.1 port, its log lines readable, killed (by PID, only this one) on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

pub struct Binary {
    child: std::process::Child,
    pub addr: String,
    lines: mpsc::Receiver<String>,
    /// Every line `wait_line` read, the matching ones included.
    read: std::sync::Mutex<Vec<String>>,
}

impl Binary {
    /// Starts `meshgate --config <config> --listen 8080=127.0.0.1:0 <extra>` (operations ports on
    /// ephemeral 127.0.0.1 ports too) and waits (bounded) for its `listening` log line.
    pub fn start(config: &Path, extra: &[&str]) -> Binary {
        Self::start_on(config, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Like `start`, with Gateway port 8080 on `listen` and readiness on `health`.
    pub fn start_on(config: &Path, listen: &str, health: &str, extra: &[&str]) -> Binary {
        Self::start_with(Command::new(BIN), config, listen, health, extra)
    }

    /// Like `start`, with at most `nofile` open file descriptors (`prlimit`, which then execs
    /// meshgate in place: the PID is meshgate's).
    pub fn start_with_nofile(nofile: u32, config: &Path, extra: &[&str]) -> Binary {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(BIN);
        Self::start_with(cmd, config, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    fn start_with(
        mut cmd: Command,
        config: &Path,
        listen: &str,
        health: &str,
        extra: &[&str],
    ) -> Binary {
        let mut child = cmd
            .arg("--config")
            .arg(config)
            .args(["--listen", &format!("8080={listen}")])
            .args(["--admin-address", "127.0.0.1:0"])
            .args(["--health-address", health])
            .args(["--stats-address", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start meshgate");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut bin = Binary {
            child,
            addr: String::new(),
            lines,
            read: std::sync::Mutex::default(),
        };
        let line = bin.wait_line("listening");
        bin.addr = line
            .split("addr=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("addr= in the listening line")
            .to_owned();
        bin
    }

    /// Waits (at most 30 s) for a log line containing `needle`.
    pub fn wait_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            self.read.lock().unwrap().push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every log line `wait_line` has read so far (skipped ones too).
    pub fn read_lines(&self) -> Vec<String> {
        self.read.lock().unwrap().clone()
    }

    /// Every log line received so far and not yet read.
    pub fn take_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits (polling, at most `limit`) for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to this child only (`kill -<sig> <pid>`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP/1.1 GET with `Connection: close`; returns the raw response.
pub fn get(addr: &str, path: &str) -> String {
    try_get(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// Like `get`, with the error instead of a panic (the server may be down).
pub fn try_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
