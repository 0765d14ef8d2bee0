//! The real `glint serve` binary, started in a scratch directory on a free loopback port.
//!
//! Used by the end-to-end tests that drive Glint with unmodified OpenStack clients: the
//! process, its configuration from `GLINT__*` variables and its SQLite file are exactly what an
//! operator gets, nothing is served in-process.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the binary may take to migrate its database and answer `/healthcheck`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// A running `glint serve`; the process is killed and its directory removed on drop.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    // Declared last so the directory outlives the process that writes into it.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `glint serve` in a fresh temporary directory (its current directory, with the
    /// SQLite database inside) and waits until `GET /healthcheck` answers 200.
    ///
    /// Panics with the server's output if it does not come up within 20 seconds.
    /// `config` holds extra `GLINT__...` configuration variables.
    pub fn start_with(config: &[(String, String)]) -> Server {
        // Another process may grab the port between our probe and the server's bind; try anew.
        let mut last_failure = String::new();
        for _ in 0..3 {
            match Self::try_start(config) {
                Ok(server) => return server,
                Err(Failure::PortTaken(output)) => last_failure = output,
                Err(Failure::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!("glint serve could not bind a free port three times; last output:\n{last_failure}");
    }

    fn try_start(config: &[(String, String)]) -> Result<Server, Failure> {
        let dir = tempfile::tempdir().expect("create a temporary directory for the server");
        let addr = free_loopback_port();
        let db = dir.path().join("glint.db");
        let log = dir.path().join("glint.log");
        let log_file = File::create(&log).expect("create the server log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_glint"));
        command
            .arg("serve")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log handle"))
            .stderr(log_file);
        // Only what we set here configures the server, not whatever the caller exported.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GLINT") {
                command.env_remove(&name);
            }
        }
        command
            .env("GLINT__SERVER__BIND", addr.to_string())
            .env("GLINT__DATABASE__URL", format!("sqlite://{}?mode=rwc", db.display()))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .envs(config.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = command.spawn().expect("spawn the glint binary");
        let mut server = Server { child, addr, log, dir };
        server.wait_until_healthy()?;
        Ok(server)
    }

    fn wait_until_healthy(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                let output = self.output();
                if output.contains("in use") {
                    return Err(Failure::PortTaken(output));
                }
                return Err(Failure::Fatal(format!("glint serve exited with {status} before answering:\n{output}")));
            }
            if healthcheck(self.addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::Fatal(format!(
                    "glint serve did not answer GET /healthcheck on {} within {STARTUP_DEADLINE:?}:\n{}",
                    self.addr,
                    self.output()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The service root, e.g. `http://127.0.0.1:43117` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory the server runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server printed so far (its log), for failure messages.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Failure {
    /// The port was taken between probing and binding (server output attached).
    PortTaken(String),
    Fatal(String),
}

/// A loopback port nobody listens on right now.
fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket on 127.0.0.1");
    listener.local_addr().expect("probe socket address")
}

/// Whether `GET /healthcheck` on `addr` answers 200.
fn healthcheck(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthcheck HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}
