//! A real Ceph cluster for the RBD store tests: one monitor and one OSD on loopback, started
//! once per test run by `ceph.sh` beside this file and torn down by its watchdog when the run
//! ends. Needs Debian's ceph-mon, ceph-osd and ceph-common (.ci/run installs them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use glint_core::config::RbdConfig;
use glint_rbd::{Cluster, ClusterConfig, Pool};

/// The running cluster: its directory (ceph.conf, keyrings) and fsid.
pub struct Ceph {
    dir: PathBuf,
    /// The cluster's fsid, as `rbd://` locations name it.
    pub fsid: String,
}

impl Ceph {
    /// The cluster, started on first call. `None` (after printing "skipped: ...") when Ceph
    /// is not installed; with `CI=true` that panics instead, so CI cannot pass by skipping.
    pub fn get() -> Option<&'static Ceph> {
        static CEPH: OnceLock<Option<Ceph>> = OnceLock::new();
        CEPH.get_or_init(Ceph::start).as_ref()
    }

    fn start() -> Option<Ceph> {
        if Command::new("ceph-mon").arg("--version").output().is_err() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "ceph-mon unavailable (required when CI=true): install ceph-mon, ceph-osd and ceph-common, as .ci/run does"
                );
            }
            eprintln!("skipped: ceph unavailable");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("glint-ceph-{}", std::process::id()));
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/ceph.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(port.to_string())
            .arg(std::process::id().to_string())
            .output()
            .expect("run ceph.sh");
        assert!(
            output.status.success(),
            "starting Ceph failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let fsid = stdout.lines().last().expect("fsid").trim().to_owned();
        Some(Ceph { dir, fsid })
    }

    /// A store configuration for pool `images` as `client.glance`, as a cloud would set it.
    pub fn config(&self) -> RbdConfig {
        RbdConfig {
            pool: "images".into(),
            user: "glance".into(),
            conf_file: Some(self.dir.join("ceph.conf")),
            keyring: Some(self.dir.join("glance.keyring")),
            chunk_size: 4,
            thin_provisioning: false,
            connect_timeout: 10,
            description: Some("Ceph".into()),
        }
    }

    /// Pool `images` seen as `client.admin`, independently of the store under test.
    pub fn pool(&self) -> Pool {
        let cluster = Cluster::connect(&ClusterConfig {
            user: "admin".into(),
            conf_file: Some(self.dir.join("ceph.conf").display().to_string()),
            keyring: None,
            timeout: Duration::from_secs(30),
        })
        .expect("connect as admin");
        Arc::clone(&cluster).pool("images").expect("pool images")
    }

    /// Runs the `rbd` command as `client.admin` (for what the store itself never does, such as
    /// cloning as Nova would).
    pub fn rbd(&self, args: &[&str]) -> Output {
        let conf = self.dir.join("ceph.conf");
        let output = Command::new("rbd").arg("-c").arg(conf).args(args).output().expect("run rbd");
        assert!(output.status.success(), "rbd {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }
}
