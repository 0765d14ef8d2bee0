//! The real `glint` binary as separate processes.
//!
//! [`Server`]: `glint serve` in a scratch directory on a free loopback port, for the
//! end-to-end tests that drive Glint with unmodified OpenStack clients: the process, its
//! configuration from `GLINT__*` variables and its SQLite file are exactly what an operator
//! gets, nothing is served in-process.
//!
//! [`Node`]: one `glint api` or `glint worker` of the production topology (see
//! `support::cluster`), which a fault test can SIGKILL and start again.

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
        let mut command = glint_command("serve", dir.path(), log_file);
        command
            .env("GLINT__SERVER__BIND", addr.to_string())
            .env("GLINT__DATABASE__URL", format!("sqlite://{}?mode=rwc", db.display()))
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

    /// The address the server listens on, for raw connections.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a raw/bare image with nothing else set; its id.
    pub async fn create_image(&self) -> String {
        let body = serde_json::json!({"disk_format": "raw", "container_format": "bare"});
        let response = reqwest::Client::new().post(format!("{}/v2/images", self.url())).json(&body).send().await;
        let image: serde_json::Value = response.expect("create").json().await.expect("json");
        image["id"].as_str().expect("id").to_owned()
    }

    /// Image `id`'s status as the API shows it.
    pub async fn image_status(&self, id: &str) -> String {
        let response = reqwest::get(format!("{}/v2/images/{id}", self.url())).await.expect("show");
        let image: serde_json::Value = response.json().await.expect("json");
        image["status"].as_str().expect("status").to_owned()
    }

    /// The directory the server runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, the signal of a clean stop; see [`Server::exit_status`].
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
    }

    /// How the process ended, once it has (reaping it); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("poll the server process")
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

/// `glint <subcommand>` run in `dir`, its output going to `log`, configured only by what the
/// caller adds: every inherited `GLINT*` variable is removed.
fn glint_command(subcommand: &str, dir: &Path, log: File) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glint"));
    command
        .arg(subcommand)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log);
    // Only what we set here configures the process, not whatever the caller exported.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GLINT") {
            command.env_remove(&name);
        }
    }
    command.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).env("NO_COLOR", "1");
    command
}

/// Runs `glint <subcommand>` (e.g. `migrate`) in `dir` with `config` to its end; panics with
/// its output unless it succeeds.
pub fn run_to_completion(subcommand: &str, dir: &Path, config: &[(String, String)]) {
    std::fs::create_dir_all(dir).expect("create the directory");
    let log = dir.join(format!("{subcommand}.log"));
    let mut command = glint_command(subcommand, dir, File::create(&log).expect("create the log"));
    command.envs(config.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let status = command.status().expect("run the glint binary");
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "glint {subcommand} exited with {status}:\n{output}");
}

/// What a [`Node`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `glint api`: the HTTP API (and an outbox relay), reached at [`Node::url`].
    Api,
    /// `glint worker`: runs tasks woken through the broker (and an outbox relay); no port.
    Worker,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// The line a worker logs once it runs (it has no HTTP port to probe).
const WORKER_STARTED: &str = "task worker started";

/// One `glint api` or `glint worker` process of a multi-process test.
///
/// It runs in a directory the caller owns, configured only by the given variables (inherited
/// `GLINT*` variables are removed). [`Node::kill`] sends SIGKILL, as a crash or the OOM killer
/// would; [`Node::restart`] starts the same configuration again, an API on the same address.
/// Every incarnation logs to a file of its own and [`Node::output`] joins them. Killed on drop.
pub struct Node {
    role: Role,
    name: String,
    dir: PathBuf,
    config: Vec<(String, String)>,
    addr: Option<SocketAddr>,
    child: Option<Child>,
    logs: Vec<PathBuf>,
    /// Whether an incarnation ever came up (from then on an API keeps its address).
    started: bool,
}

impl Node {
    /// Starts `role` in `dir` (created if missing) and waits until it is ready: an API answers
    /// `GET /healthcheck` on a free loopback port, a worker has logged "task worker started".
    /// `name` names its log files (`<name>.<incarnation>.log` in `dir`).
    ///
    /// Panics with the process's output if it does not come up within 30 seconds.
    pub fn start(role: Role, name: &str, dir: &Path, config: &[(String, String)]) -> Node {
        std::fs::create_dir_all(dir).expect("create the node's directory");
        let mut node = Node {
            role,
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            config: config.to_vec(),
            addr: None,
            child: None,
            logs: Vec::new(),
            started: false,
        };
        node.spawn_until_ready();
        node
    }

    /// Starts the process (again) and waits until it is ready; an API that cannot bind its
    /// port (taken between our probe and its bind) gets another one on its first start.
    fn spawn_until_ready(&mut self) {
        let mut last_failure = String::new();
        for _ in 0..3 {
            if self.role == Role::Api && self.addr.is_none() {
                self.addr = Some(free_loopback_port());
            }
            match self.try_spawn() {
                Ok(()) => {
                    self.started = true;
                    return;
                }
                Err(Failure::PortTaken(output)) => {
                    last_failure = output;
                    // A restart keeps its address (clients know it); the first start moves on.
                    if !self.started {
                        self.addr = None;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(Failure::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!("{} could not bind its port three times; last output:\n{last_failure}", self.name);
    }

    fn try_spawn(&mut self) -> Result<(), Failure> {
        let log = self.dir.join(format!("{}.{}.log", self.name, self.logs.len()));
        let log_file = File::create(&log).expect("create the node log");
        self.logs.push(log.clone());
        let mut command = glint_command(self.role.subcommand(), &self.dir, log_file);
        if let Some(addr) = self.addr {
            command.env("GLINT__SERVER__BIND", addr.to_string());
        }
        command.envs(self.config.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = command.spawn().expect("spawn the glint binary");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = self.child.as_mut().expect("just spawned");
            if let Some(status) = child.try_wait().expect("poll the node process") {
                self.child = None;
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                if output.contains("in use") {
                    return Err(Failure::PortTaken(output));
                }
                return Err(Failure::Fatal(format!(
                    "{} exited with {status} before it was ready:\n{output}",
                    self.name
                )));
            }
            let ready = match (self.role, self.addr) {
                (Role::Api, Some(addr)) => healthcheck(addr),
                _ => std::fs::read_to_string(&log).is_ok_and(|out| out.contains(WORKER_STARTED)),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::Fatal(format!(
                    "{} was not ready within 30 s:\n{}",
                    self.name,
                    std::fs::read_to_string(&log).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM, the signal of a clean stop (requests in flight are finished); see
    /// [`Node::exited`] and [`Node::kill`].
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }

    /// Whether the process has exited (reaping it if so); `true` when none runs.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            None => true,
            Some(Ok(None)) => false,
            Some(_) => {
                self.child = None;
                true
            }
        }
    }

    /// SIGKILLs the process (no clean-up of any kind runs) and reaps it; returns its pid.
    /// Does nothing if it is not running.
    pub fn kill(&mut self) -> Option<u32> {
        let mut child = self.child.take()?;
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        Some(pid)
    }

    /// Starts the process again with the same configuration (an API on the same address),
    /// killing the running one first if there is one; waits until it is ready.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_until_ready();
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its name, as given to [`Node::start`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API root, e.g. `http://127.0.0.1:43117`. Panics for a worker.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap_or_else(|| panic!("{} is a worker: it has no address", self.name)))
    }

    /// Everything every incarnation printed, in order, each under a header line.
    pub fn output(&self) -> String {
        let mut all = String::new();
        for (n, log) in self.logs.iter().enumerate() {
            let text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
            all.push_str(&format!("----- {} incarnation {n} -----\n{text}", self.name));
        }
        all
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Failure {
    /// The port was taken between probing and binding (server output attached).
    PortTaken(String),
    Fatal(String),
}

/// A loopback port nobody listens on right now.
pub fn free_loopback_port() -> SocketAddr {
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
