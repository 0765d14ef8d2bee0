//! End to end: the real `glint serve` binary driven by the unmodified `openstack`
//! (python-openstackclient) and `glance` (python-glanceclient) command-line clients, asserting
//! on what they print.
//!
//! No-auth invocations (every request is an anonymous admin):
//!
//! * `openstack --os-auth-type none --os-endpoint http://HOST:PORT image ... -f json`
//! * `glance --os-image-url http://HOST:PORT --os-auth-token <anything> image-...`
//!
//! Both clients read image data from standard input whenever it is not a terminal (so
//! `openstack image create NAME </dev/null` uploads an empty file, and a closed stdin crashes
//! openstackclient), so every client here runs with a pseudo-terminal as stdin, like a person
//! at a shell. Image data is always given with `--file`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::keystone::{Keystone, User, keystone};
use crate::support::server::Server;
use crate::support::venv;
use crate::support::web::{Reply, WebServer};

/// How long one client invocation may take (Python start-up is ~1-2 s).
const CLI_DEADLINE: Duration = Duration::from_secs(90);

/// Any token does: the server runs in no-auth mode and ignores it.
const TOKEN: &str = "glint-noauth";

/// The image data file the tests upload, written into the clients' working directory: plain
/// text that no format inspector mistakes for a disk format, so `raw` fits. Its digests were
/// computed independently (Python's hashlib).
const DISK_FILE: &str = "disk.raw";
const DISK_LINE: &[u8] = b"glint end-to-end test image\n";
const DISK_REPEAT: usize = 2048;
const DISK_SIZE: usize = DISK_LINE.len() * DISK_REPEAT;
const DISK_MD5: &str = "b92e207e8b74b9fe2d0536785ee1c20a";
const DISK_SHA512: &str = "949d80d7bbca3e798abbbb904e119f9aa9c6ebfeb8fa91ca028659ad6f17f0779dac15805a5956742174e245a449f270d381f52d5f244c2c9a21bd2323bb84e2";

/// How long an import run by `glint serve`'s own worker may take to make an image active.
const IMPORT_DEADLINE: Duration = Duration::from_secs(60);

/// openstacksdk's `create_image` with web-download import, which `openstack image create`
/// cannot ask for (it has `--import`, but no `--uri`): argv is the endpoint, the URL, a name.
const SDK_WEB_DOWNLOAD: &str = r#"
import sys
import openstack
conn = openstack.connect(auth_type="none", endpoint=sys.argv[1])
image = conn.image.create_image(sys.argv[3], use_import=True, import_method="web-download",
                                uri=sys.argv[2], disk_format="raw", container_format="bare")
print(image.id)
"#;

/// A server plus the clients that talk to it.
struct Clients {
    bin: PathBuf,
    server: Server,
}

impl Clients {
    /// `None` when the Python clients are unavailable outside CI (the test then passes as skipped).
    fn start() -> Option<Clients> {
        Self::start_with(&[])
    }

    /// Like [`Clients::start`], the server configured with extra `GLINT__...` variables.
    fn start_with(config: &[(String, String)]) -> Option<Clients> {
        let bin = venv::clients()?;
        let server = Server::start_with(config);
        std::fs::write(server.dir().join(DISK_FILE), disk()).expect("write the image data file");
        Some(Clients { bin, server })
    }

    /// Like [`Clients::start_with`], the server in keystone mode against the test Keystone.
    fn start_keystone(config: &[(String, String)]) -> Option<(Clients, &'static Keystone)> {
        let keystone = keystone()?;
        let mut all = keystone.server_env();
        all.extend_from_slice(config);
        Some((Self::start_with(&all)?, keystone))
    }

    /// The clients logged in to `keystone` as `user` (the server must be in keystone mode).
    fn logged_in(&self, keystone: &Keystone, user: User) -> LoggedIn<'_> {
        let mut env = keystone.client_env(user);
        // The test Keystone's catalog has no image service: the clients are told where it is.
        env.push(("OS_IMAGE_ENDPOINT_OVERRIDE".into(), self.server.url()));
        LoggedIn { clients: self, env }
    }

    /// The clients logged in to `keystone` as the admin without a project: each command
    /// chooses its scope (`--os-system-scope all`).
    fn logged_in_unscoped(&self, keystone: &Keystone) -> LoggedIn<'_> {
        let mut env = keystone.unscoped_admin_env();
        env.push(("OS_IMAGE_ENDPOINT_OVERRIDE".into(), self.server.url()));
        LoggedIn { clients: self, env }
    }

    /// The bytes of the file `name` in the clients' working directory.
    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.server.dir().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// `openstack <args>` against the server.
    fn openstack(&self, args: &[&str]) -> Run {
        let mut all = vec!["--os-auth-type".to_owned(), "none".into(), "--os-endpoint".into(), self.server.url()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(&self.bin.join("openstack"), &all, &self.server)
    }

    /// `openstack <args> -f json`, which must succeed; its parsed output.
    fn openstack_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        self.openstack(&all).success().json()
    }

    /// `glance <args>` against the server.
    fn glance(&self, args: &[&str]) -> Run {
        let mut all = vec!["--os-image-url".to_owned(), self.server.url(), "--os-auth-token".into(), TOKEN.into()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(&self.bin.join("glance"), &all, &self.server)
    }

    /// `openstack image create ... -f json`: the created image.
    fn create(&self, args: &[&str]) -> Value {
        let mut all = vec!["image", "create"];
        all.extend(args);
        self.openstack_json(&all)
    }

    /// `openstack image show <image> -f json`.
    fn show(&self, image: &str) -> Value {
        self.openstack_json(&["image", "show", image])
    }

    /// `openstack image show <image>` once the image is active (the import's worker is done).
    fn wait_active(&self, image: &str) -> Value {
        let deadline = Instant::now() + IMPORT_DEADLINE;
        loop {
            let shown = self.show(image);
            let status = text(&shown, "status");
            if status == "active" {
                return shown;
            }
            assert!(
                matches!(status.as_str(), "queued" | "uploading" | "importing") && Instant::now() < deadline,
                "{image} is {status}, not active within {IMPORT_DEADLINE:?}: {shown:#}\n{}",
                self.server.output()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The names `openstack image list <args>` prints, in its order.
    fn list_names(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["image", "list"];
        all.extend(args);
        rows(&self.openstack_json(&all)).iter().map(|row| text(row, "Name")).collect()
    }

    /// `glance image-show <id>` as property → value.
    fn glance_show(&self, id: &str) -> BTreeMap<String, String> {
        properties(&self.glance(&["image-show", id]).success().stdout)
    }

    /// The names `glance image-list <args>` prints, in its order.
    fn glance_list_names(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["image-list"];
        all.extend(args);
        listing(&self.glance(&all).success().stdout).into_iter().map(|(_, name)| name).collect()
    }
}

/// The clients with a Keystone user's credentials in their environment.
struct LoggedIn<'a> {
    clients: &'a Clients,
    env: Vec<(String, String)>,
}

impl LoggedIn<'_> {
    /// `openstack <args>`, authenticating with Keystone.
    fn openstack(&self, args: &[&str]) -> Run {
        let all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        run_with_env(&self.clients.bin.join("openstack"), &all, &self.env, &self.clients.server)
    }

    /// `openstack <args> -f json`, which must succeed; its parsed output.
    fn openstack_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        self.openstack(&all).success().json()
    }

    /// `glance <args>`, authenticating with Keystone.
    fn glance(&self, args: &[&str]) -> Run {
        let mut all = vec!["--os-image-url".to_owned(), self.clients.server.url()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run_with_env(&self.clients.bin.join("glance"), &all, &self.env, &self.clients.server)
    }

    /// The ids `openstack image list <args>` prints.
    fn list_ids(&self, args: &[&str]) -> BTreeSet<String> {
        let mut all = vec!["image", "list"];
        all.extend(args);
        rows(&self.openstack_json(&all)).iter().map(|row| text(row, "ID")).collect()
    }
}

/// One finished client invocation.
struct Run {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// The server's log after the command, for failure messages.
    server_log: String,
}

impl Run {
    fn describe(&self) -> String {
        let log: Vec<&str> = self.server_log.lines().collect();
        format!(
            "`{}` exited with {}\n--- stdout\n{}\n--- stderr\n{}\n--- server log (tail)\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr,
            log[log.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Asserts the command succeeded.
    #[track_caller]
    fn success(self) -> Run {
        assert!(self.status.success(), "{}", self.describe());
        self
    }

    /// Asserts the command failed and that its error output contains `expected`.
    #[track_caller]
    fn failure_mentioning(self, expected: &str) -> Run {
        assert!(!self.status.success(), "expected a failure: {}", self.describe());
        assert!(
            self.stderr.contains(expected) || self.stdout.contains(expected),
            "expected the output to mention {expected:?}: {}",
            self.describe()
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("output is not JSON ({e}): {}", self.describe()))
    }
}

/// Runs `program args` with a deadline, a pseudo-terminal as stdin and no `OS_*` variables
/// from the caller's environment (no clouds.yaml selection, no stray credentials).
fn run(program: &Path, args: &[String], server: &Server) -> Run {
    run_with_env(program, args, &[], server)
}

/// [`run`] with the variables `env` set (a Keystone login).
fn run_with_env(program: &Path, args: &[String], env: &[(String, String)], server: &Server) -> Run {
    let command_line = format!("{} {}", program.display(), args.join(" "));
    let pty = nix::pty::openpty(None, None).expect("open a pseudo-terminal for the client's stdin");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(server.dir())
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PYTHONIOENCODING", "utf-8");
    let inherited: Vec<OsString> = std::env::vars_os().map(|(name, _)| name).collect();
    for name in inherited.iter().filter(|n| n.to_string_lossy().starts_with("OS_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command_line}: {e}"));
    // The child has its copy of the terminal; ours goes with the Command.
    drop(command);
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + CLI_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the client") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{command_line}` did not finish within {CLI_DEADLINE:?}; partial stderr:\n{}\nserver log:\n{}",
                join(stderr),
                server.output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Keep the terminal's master side open until the client is gone: closing it hangs the
    // slave up and the client would no longer see a terminal.
    drop(pty.master);
    Run { command: command_line, status, stdout: join(stdout), stderr: join(stderr), server_log: server.output() }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join(handle: JoinHandle<String>) -> String {
    handle.join().unwrap_or_else(|_| "(reader thread panicked)".into())
}

/// The content of [`DISK_FILE`].
fn disk() -> Vec<u8> {
    DISK_LINE.repeat(DISK_REPEAT)
}

// --- reading what the clients print -----------------------------------------------------------

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_else(|| panic!("{key:?} is not a string in {value:#}")).to_owned()
}

fn rows(list: &Value) -> &Vec<Value> {
    list.as_array().unwrap_or_else(|| panic!("expected a JSON array, got {list:#}"))
}

fn string_set(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value:#}"))
        .iter()
        .map(|v| v.as_str().expect("string item").to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// The cells of every row of a prettytable (`| a | b |`), header row included.
fn table_rows(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|') && line.ends_with('|') && line.len() > 1)
        .map(|line| line[1..line.len() - 1].split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect()
}

/// glanceclient's `Property | Value` table as a map (wrapped values rejoined).
fn properties(output: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut last = String::new();
    for row in table_rows(output).into_iter().skip(1) {
        let [key, value] = <[String; 2]>::try_from(row).unwrap_or_else(|r| panic!("not a 2-column row {r:?}"));
        if key.is_empty() {
            map.entry(last.clone()).and_modify(|v: &mut String| v.push_str(&value));
        } else {
            map.insert(key.clone(), value);
            last = key;
        }
    }
    assert!(!map.is_empty(), "no property table in:\n{output}");
    map
}

/// glanceclient's `ID | Name` table as (id, name) pairs in order.
fn listing(output: &str) -> Vec<(String, String)> {
    let mut table = table_rows(output).into_iter();
    assert_eq!(table.next(), Some(vec!["ID".to_owned(), "Name".to_owned()]), "no image table in:\n{output}");
    table.map(|row| (row[0].clone(), row[1].clone())).collect()
}

/// The JSON list glanceclient prints for `tags` (`["a", "b"]`) as a set.
fn glance_tags(props: &BTreeMap<String, String>) -> BTreeSet<String> {
    let raw = props.get("tags").expect("tags row");
    string_set(&serde_json::from_str(raw).unwrap_or_else(|e| panic!("tags {raw:?}: {e}")))
}

fn prop<'a>(props: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    props.get(key).unwrap_or_else(|| panic!("no {key:?} row in {props:#?}"))
}

macro_rules! clients_or_skip {
    () => {
        match Clients::start() {
            Some(clients) => clients,
            None => return,
        }
    };
}

// --- openstack ------------------------------------------------------------------------------

#[test]
fn openstack_image_create_with_properties_and_tags() {
    let c = clients_or_skip!();
    let created = c.create(&[
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--min-disk",
        "1",
        "--min-ram",
        "64",
        "--property",
        "os_distro=cirros",
        "--property",
        "hw_disk_bus=virtio",
        "--tag",
        "t1",
        "--tag",
        "t2",
        "cirros",
    ]);
    let id = text(&created, "id");
    uuid::Uuid::parse_str(&id).expect("a UUID id");
    // Shown by name: openstackclient tries GET /v2/images/cirros (404), then ?name=cirros.
    let shown = c.show("cirros");
    for image in [&created, &shown] {
        assert_eq!(text(image, "id"), id);
        assert_eq!(text(image, "name"), "cirros");
        assert_eq!(text(image, "status"), "queued");
        assert_eq!(text(image, "visibility"), "shared", "Glance's default visibility");
        assert_eq!(image["protected"], false);
        assert_eq!(text(image, "disk_format"), "qcow2");
        assert_eq!(text(image, "container_format"), "bare");
        assert_eq!(image["min_disk"], 1);
        assert_eq!(image["min_ram"], 64);
        assert_eq!(string_set(&image["tags"]), set(&["t1", "t2"]));
        assert_eq!(text(image, "file"), format!("/v2/images/{id}/file"));
        assert_eq!(text(image, "schema"), "/v2/schemas/image");
        assert!(text(image, "created_at").ends_with('Z'), "{image:#}");
        let props = &image["properties"];
        assert_eq!(text(props, "os_distro"), "cirros");
        assert_eq!(text(props, "hw_disk_bus"), "virtio");
        assert_eq!(props["os_hidden"], false);
        // openstacksdk records these on every image it creates.
        assert_eq!(text(props, "owner_specified.openstack.object"), "images/cirros");
    }
}

#[test]
fn openstack_image_create_sets_visibility_and_protection() {
    let c = clients_or_skip!();
    let public = c.create(&["--public", "pub"]);
    let private = c.create(&["--private", "--protected", "priv"]);
    let community = c.create(&["--community", "comm"]);
    assert_eq!(text(&public, "visibility"), "public");
    assert_eq!(public["protected"], false);
    assert_eq!(text(&private, "visibility"), "private");
    assert_eq!(private["protected"], true);
    assert_eq!(text(&community, "visibility"), "community");

    let long = c.openstack_json(&["image", "list", "--long"]);
    let by_name: BTreeMap<String, &Value> = rows(&long).iter().map(|r| (text(r, "Name"), r)).collect();
    // Without a project (no-auth), community images are left out of default lists, as upstream.
    assert_eq!(by_name.keys().cloned().collect::<BTreeSet<_>>(), set(&["priv", "pub"]), "{long:#}");
    assert_eq!(text(by_name["pub"], "Visibility"), "public");
    assert_eq!(by_name["pub"]["Protected"], false);
    assert_eq!(text(by_name["priv"], "Visibility"), "private");
    assert_eq!(by_name["priv"]["Protected"], true);
    assert_eq!(text(by_name["priv"], "Status"), "queued");

    assert_eq!(c.list_names(&["--community"]), ["comm"]);
    assert_eq!(c.list_names(&["--private"]), ["priv"]);
    assert_eq!(c.list_names(&["--public"]), ["pub"]);
}

#[test]
fn openstack_image_list_filters_by_property_and_tag() {
    let c = clients_or_skip!();
    c.create(&["--property", "os_distro=cirros", "--tag", "t1", "--tag", "t2", "alpha"]);
    c.create(&["--property", "os_distro=ubuntu", "--tag", "t2", "beta"]);
    c.create(&["gamma"]);

    assert_eq!(c.list_names(&["--property", "os_distro=cirros"]), ["alpha"]);
    assert_eq!(sorted(c.list_names(&["--tag", "t2"])), ["alpha", "beta"]);
    assert_eq!(c.list_names(&["--tag", "t1", "--tag", "t2"]), ["alpha"], "tags combine with AND");
    assert_eq!(c.list_names(&["--name", "beta"]), ["beta"]);
}

#[test]
fn openstack_image_list_sorts_and_limits() {
    let c = clients_or_skip!();
    let mut ids = BTreeSet::new();
    for name in ["b-img", "c-img", "a-img"] {
        ids.insert(text(&c.create(&[name]), "id"));
    }
    assert_eq!(c.list_names(&["--sort", "name:asc"]), ["a-img", "b-img", "c-img"]);
    assert_eq!(c.list_names(&["--sort", "name:desc"]), ["c-img", "b-img", "a-img"]);

    // --limit and --marker go to the server: two pages of the server's order cover everything.
    let first = c.openstack_json(&["image", "list", "--limit", "2"]);
    assert_eq!(rows(&first).len(), 2, "{first:#}");
    let marker = text(&rows(&first)[1], "ID");
    let rest = c.openstack_json(&["image", "list", "--limit", "2", "--marker", &marker]);
    assert_eq!(rows(&rest).len(), 1, "{rest:#}");
    let seen: BTreeSet<String> = rows(&first).iter().chain(rows(&rest)).map(|r| text(r, "ID")).collect();
    assert_eq!(seen, ids);
}

#[test]
fn openstack_image_set_and_unset() {
    let c = clients_or_skip!();
    let id = text(&c.create(&["--property", "k0=v0", "--tag", "t1", "img"]), "id");
    c.openstack(&[
        "image",
        "set",
        "--name",
        "img2",
        "--property",
        "k0=v0b",
        "--property",
        "k1=v1",
        "--tag",
        "t2",
        "--min-ram",
        "512",
        "--min-disk",
        "2",
        "--public",
        "--protected",
        "--hidden",
        "img",
    ])
    .success();
    let image = c.show(&id);
    assert_eq!(text(&image, "name"), "img2");
    assert_eq!(text(&image["properties"], "k0"), "v0b");
    assert_eq!(text(&image["properties"], "k1"), "v1");
    assert_eq!(string_set(&image["tags"]), set(&["t1", "t2"]));
    assert_eq!(image["min_ram"], 512);
    assert_eq!(image["min_disk"], 2);
    assert_eq!(text(&image, "visibility"), "public");
    assert_eq!(image["protected"], true);
    assert_eq!(image["properties"]["os_hidden"], true);
    assert_eq!(c.list_names(&["--hidden"]), ["img2"], "hidden images are listed only on request");

    // By name: openstacksdk finds a hidden image with ?name=img2 and then ?os_hidden=True.
    c.openstack(&["image", "unset", "--property", "k1", "--tag", "t1", "img2"]).success();
    let image = c.show(&id);
    assert!(image["properties"].get("k1").is_none(), "k1 must be gone: {image:#}");
    assert_eq!(text(&image["properties"], "k0"), "v0b");
    assert_eq!(string_set(&image["tags"]), set(&["t2"]));

    c.openstack(&["image", "set", "--unprotected", "--private", "--unhidden", &id]).success();
    let image = c.show(&id);
    assert_eq!(text(&image, "visibility"), "private");
    assert_eq!(image["protected"], false);
    assert_eq!(image["properties"]["os_hidden"], false);
}

#[test]
fn openstack_image_upload_and_download() {
    let c = clients_or_skip!();
    let image = c.create(&["--file", DISK_FILE, "--disk-format", "raw", "--container-format", "bare", "up"]);
    assert_eq!(text(&image, "status"), "active");
    assert_eq!(image["size"], DISK_SIZE);
    assert_eq!(text(&image, "checksum"), DISK_MD5);
    assert_eq!(text(&image["properties"], "os_hash_algo"), "sha512");
    assert_eq!(text(&image["properties"], "os_hash_value"), DISK_SHA512);

    c.openstack(&["image", "save", "--file", "saved.raw", "up"]).success();
    assert!(c.read("saved.raw") == disk(), "downloaded data differs from the upload");
}

#[test]
fn openstack_and_glance_round_trip_image_data_through_the_s3_store() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(s3) = runtime.block_on(crate::support::s3::S3Server::start()) else { return };
    let store = |key: &str| format!("GLINT__STORAGE__BACKENDS__OBJECTS__{key}");
    let config: Vec<(String, String)> = [
        ("GLINT__STORAGE__DEFAULT".to_owned(), "objects".to_owned()),
        (store("TYPE"), "s3".into()),
        (store("BUCKET"), s3.bucket.clone()),
        (store("ENDPOINT"), s3.endpoint()),
        (store("ACCESS_KEY_ID"), "testing".into()),
        (store("SECRET_ACCESS_KEY"), "testing".into()),
        (store("ALLOW_HTTP"), "true".into()),
    ]
    .into();
    let Some(c) = Clients::start_with(&config) else { return };
    let image =
        c.create(&["--file", DISK_FILE, "--disk-format", "raw", "--container-format", "bare", "--progress", "up"]);
    assert_eq!(text(&image, "status"), "active");
    assert_eq!(text(&image["properties"], "os_hash_value"), DISK_SHA512);
    let id = text(&image, "id");
    assert_eq!(runtime.block_on(s3.keys()), vec![id.clone()], "the data went to the bucket");

    c.openstack(&["image", "save", "--file", "saved.raw", "up"]).success();
    assert!(c.read("saved.raw") == disk(), "openstack image save returned other bytes");
    c.glance(&["image-download", "--file", "downloaded.raw", &id]).success();
    assert!(c.read("downloaded.raw") == disk(), "glance image-download returned other bytes");

    c.openstack(&["image", "delete", "up"]).success();
    assert!(runtime.block_on(s3.keys()).is_empty(), "deleting the image removed the object");
}

#[test]
fn glance_puts_images_in_the_swift_store_imports_into_it_and_deletes_from_it() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(swift) = crate::support::swift::swift() else { return };
    let container = crate::support::swift::Swift::container();
    // Past large_object_size (1 MiB): static large objects of four 1 MiB segments.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 100).map(|i| (i * 31 % 253) as u8).collect();
    let web = runtime.block_on(WebServer::start());
    let url = web.route("/big.raw", Reply::Bytes(big.clone()));
    let store = |key: &str| format!("GLINT__STORAGE__BACKENDS__SWIFT__{key}");
    let config: Vec<(String, String)> = [
        ("GLINT__STORAGE__DEFAULT".to_owned(), "local".to_owned()),
        ("GLINT__STORAGE__BACKENDS__LOCAL__TYPE".to_owned(), "filesystem".into()),
        ("GLINT__STORAGE__BACKENDS__LOCAL__PATH".to_owned(), "local".into()),
        (store("TYPE"), "swift".into()),
        (store("AUTH_URL"), swift.auth_url.clone()),
        (store("AUTH_VERSION"), "1".into()),
        (store("USER"), swift.user.clone()),
        (store("KEY"), swift.key.clone()),
        (store("CONTAINER"), container.clone()),
        (store("LARGE_OBJECT_SIZE"), "1".into()),
        (store("LARGE_OBJECT_CHUNK_SIZE"), "1".into()),
        (store("CREATE_CONTAINER_ON_PUT"), "true".into()),
        ("GLINT__IMPORT__FILTERING__ALLOW_PRIVATE_ADDRESSES".to_owned(), "true".into()),
        ("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".to_owned(), format!("[{}]", web.port())),
    ]
    .into();
    let Some(c) = Clients::start_with(&config) else { return };
    std::fs::write(c.server.dir().join("big.raw"), &big).expect("write the image file");
    let account = runtime.block_on(swift.account());
    let segments = format!("{container}_segments");

    let uploaded = properties(
        &c.glance(&["image-create", "--disk-format", "raw", "--container-format", "bare", "--file", "big.raw"])
            .success()
            .stdout,
    );
    assert_eq!(prop(&uploaded, "stores"), "local");
    let stored = properties(
        &c.glance(&[
            "image-create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            "big.raw",
            "--store",
            "swift",
        ])
        .success()
        .stdout,
    );
    let id = prop(&stored, "id").to_owned();
    assert_eq!((prop(&stored, "stores"), prop(&stored, "status")), ("swift", "active"));
    assert_eq!(prop(&stored, "checksum"), prop(&uploaded, "checksum"));
    assert_eq!(runtime.block_on(account.manifest(&container, &id)).len(), 4);
    assert!(runtime.block_on(account.object(&container, &id)) == big, "the object in Swift differs");
    c.glance(&["image-download", "--file", "stored.raw", &id]).success();
    assert!(c.read("stored.raw") == big, "glance image-download returned other bytes");

    let imported = properties(
        &c.glance(&[
            "image-create-via-import",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--import-method",
            "web-download",
            "--uri",
            &url,
            "--stores",
            "local,swift",
        ])
        .success()
        .stdout,
    );
    let imported = prop(&imported, "id").to_owned();
    let deadline = std::time::Instant::now() + IMPORT_DEADLINE;
    while c.glance_show(&imported).get("stores").map(String::as_str) != Some("local,swift") {
        assert!(std::time::Instant::now() < deadline, "the import did not finish: {:?}", c.glance_show(&imported));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(prop(&c.glance_show(&imported), "checksum"), prop(&uploaded, "checksum"));
    assert!(runtime.block_on(account.object(&container, &imported)) == big, "the imported object differs");

    c.glance(&["stores-delete", "--store", "swift", &imported]).success();
    assert_eq!(prop(&c.glance_show(&imported), "stores"), "local");
    assert!(runtime.block_on(account.head(&container, &imported)).is_none(), "the copy in Swift is gone");
    c.openstack(&["image", "delete", &id]).success();
    assert_eq!(runtime.block_on(account.names(&container)), Vec::<String>::new());
    assert_eq!(runtime.block_on(account.names(&segments)), Vec::<String>::new(), "no segment is left");
}

/// The bytes of the RBD image `image`'s snapshot `snap` in pool `images`, as `rbd export` reads them.
fn rbd_snapshot(ceph: &crate::support::ceph::Ceph, dir: &Path, image: &str) -> Vec<u8> {
    let file = dir.join(format!("{image}.export"));
    ceph.rbd(&["export", "--no-progress", &format!("images/{image}@snap"), &file.display().to_string()]);
    let bytes = std::fs::read(&file).expect("read the export");
    std::fs::remove_file(&file).expect("remove the export");
    bytes
}

#[test]
fn glance_uploads_to_rbd_imports_into_rbd_and_swift_at_once_and_nova_clones_the_snapshot() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(ceph) = crate::support::ceph::Ceph::get() else { return };
    let Some(swift) = crate::support::swift::swift() else { return };
    let container = crate::support::swift::Swift::container();
    // Past RBD's 4 MiB objects and Swift's 1 MiB large_object_size: five segments.
    let big: Vec<u8> = (0..4 * 1024 * 1024 + 4321).map(|i| (i * 29 % 251) as u8).collect();
    let rbd = ceph.config();
    let path = |p: Option<PathBuf>| p.expect("path").display().to_string();
    let backend = |store: &str, key: &str| format!("GLINT__STORAGE__BACKENDS__{store}__{key}");
    let config: Vec<(String, String)> = [
        ("GLINT__STORAGE__DEFAULT".to_owned(), "local".to_owned()),
        ("GLINT__IMAGES__SHOW_IMAGE_DIRECT_URL".to_owned(), "true".to_owned()),
        (backend("LOCAL", "TYPE"), "filesystem".into()),
        (backend("LOCAL", "PATH"), "local".into()),
        (backend("RBD", "TYPE"), "rbd".into()),
        (backend("RBD", "POOL"), rbd.pool.clone()),
        (backend("RBD", "USER"), rbd.user.clone()),
        (backend("RBD", "CONF_FILE"), path(rbd.conf_file.clone())),
        (backend("RBD", "KEYRING"), path(rbd.keyring.clone())),
        (backend("RBD", "CHUNK_SIZE"), rbd.chunk_size.to_string()),
        (backend("SWIFT", "TYPE"), "swift".into()),
        (backend("SWIFT", "AUTH_URL"), swift.auth_url.clone()),
        (backend("SWIFT", "AUTH_VERSION"), "1".into()),
        (backend("SWIFT", "USER"), swift.user.clone()),
        (backend("SWIFT", "KEY"), swift.key.clone()),
        (backend("SWIFT", "CONTAINER"), container.clone()),
        (backend("SWIFT", "LARGE_OBJECT_SIZE"), "1".into()),
        (backend("SWIFT", "LARGE_OBJECT_CHUNK_SIZE"), "1".into()),
        (backend("SWIFT", "CREATE_CONTAINER_ON_PUT"), "true".into()),
    ]
    .into();
    let Some(c) = Clients::start_with(&config) else { return };
    std::fs::write(c.server.dir().join("big.raw"), &big).expect("write the image file");
    let account = runtime.block_on(swift.account());
    let pool_has = |id: &str| ceph.pool().list().expect("list the pool").iter().any(|name| name == id);

    // glance image-create --store rbd: a synchronous upload into the pool.
    let uploaded = properties(
        &c.glance(&[
            "image-create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            "big.raw",
            "--store",
            "rbd",
        ])
        .success()
        .stdout,
    );
    let uploaded_id = prop(&uploaded, "id").to_owned();
    assert_eq!((prop(&uploaded, "stores"), prop(&uploaded, "status")), ("rbd", "active"));
    assert!(rbd_snapshot(ceph, c.server.dir(), &uploaded_id) == big, "the RBD snapshot differs from the upload");
    let direct_url = format!("rbd://{}/images/{uploaded_id}/snap", ceph.fsid);
    assert_eq!(prop(&uploaded, "direct_url"), direct_url);

    // glance image-create-via-import --stores rbd,swift: glance-direct into both at once.
    let imported = properties(
        &c.glance(&[
            "image-create-via-import",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--import-method",
            "glance-direct",
            "--file",
            "big.raw",
            "--stores",
            "rbd,swift",
        ])
        .success()
        .stdout,
    );
    let imported = prop(&imported, "id").to_owned();
    let deadline = Instant::now() + IMPORT_DEADLINE;
    let shown = loop {
        let shown = c.glance_show(&imported);
        if shown.get("status").map(String::as_str) == Some("active")
            && shown.get("stores").map(String::as_str) == Some("rbd,swift")
        {
            break shown;
        }
        assert!(Instant::now() < deadline, "the import did not finish: {shown:?}\n{}", c.server.output());
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(prop(&shown, "checksum"), prop(&uploaded, "checksum"));
    assert_eq!(prop(&shown, "os_hash_value"), prop(&uploaded, "os_hash_value"));
    assert!(rbd_snapshot(ceph, c.server.dir(), &imported) == big, "the copy in RBD differs");
    assert!(runtime.block_on(account.object(&container, &imported)) == big, "the copy in Swift differs");
    assert_eq!(runtime.block_on(account.manifest(&container, &imported)).len(), 5);

    // Nova's copy-on-write boot: a clone of the snapshot the location names.
    let location = direct_url.strip_prefix("rbd://").expect("an rbd:// URL");
    let [fsid, pool, image, snap] = <[&str; 4]>::try_from(location.split('/').collect::<Vec<_>>()).expect("4 parts");
    assert_eq!(fsid, ceph.fsid);
    let clone = format!("{pool}/vm-{uploaded_id}_disk");
    ceph.rbd(&["clone", &format!("{pool}/{image}@{snap}"), &clone]);
    let info: Value =
        serde_json::from_slice(&ceph.rbd(&["info", "--format", "json", &clone]).stdout).expect("rbd info");
    assert_eq!(info["parent"]["image"], uploaded_id.as_str(), "{info:#}");
    assert_eq!(info["size"], big.len(), "{info:#}");
    c.glance(&["image-delete", &uploaded_id]).failure_mentioning("in use");
    assert_eq!(prop(&c.glance_show(&uploaded_id), "status"), "active");
    ceph.rbd(&["rm", "--no-progress", &clone]);

    for id in [&uploaded_id, &imported] {
        c.glance(&["image-delete", id]).success();
        assert!(!pool_has(id), "the RBD image of {id} is gone");
    }
    assert_eq!(runtime.block_on(account.names(&container)), Vec::<String>::new());
    assert_eq!(runtime.block_on(account.names(&format!("{container}_segments"))), Vec::<String>::new());
}

/// `GLINT__...` variables for two filesystem stores in the server's directory, `fast` (the
/// default) and `cheap`: Glance's multistore mode.
fn two_stores() -> Vec<(String, String)> {
    let mut config = vec![("GLINT__STORAGE__DEFAULT".to_owned(), "fast".to_owned())];
    for store in ["FAST", "CHEAP"] {
        config.push((format!("GLINT__STORAGE__BACKENDS__{store}__TYPE"), "filesystem".into()));
        config.push((format!("GLINT__STORAGE__BACKENDS__{store}__PATH"), store.to_lowercase()));
    }
    config
}

#[test]
fn glance_stores_delete_removes_one_store_s_copy() {
    let Some(c) = Clients::start_with(&two_stores()) else { return };
    let created = properties(
        &c.glance(&["image-create", "--disk-format", "raw", "--container-format", "bare", "--file", DISK_FILE])
            .success()
            .stdout,
    );
    let id = prop(&created, "id").to_owned();
    assert_eq!(prop(&created, "stores"), "fast");
    c.glance(&["image-import", &id, "--import-method", "copy-image", "--stores", "cheap"]).success();
    let deadline = std::time::Instant::now() + CLI_DEADLINE;
    while c.glance_show(&id).get("stores").map(String::as_str) != Some("cheap,fast") {
        assert!(std::time::Instant::now() < deadline, "copy-image did not finish: {:?}", c.glance_show(&id));
        std::thread::sleep(Duration::from_millis(300));
    }
    c.glance(&["stores-delete", "--store", "fast", &id]).success();
    assert_eq!(prop(&c.glance_show(&id), "stores"), "cheap");
    assert!(!c.server.dir().join("fast").join(&id).exists(), "the copy in fast is gone");
    assert!(c.server.dir().join("cheap").join(&id).exists());
    c.glance(&["stores-delete", "--store", "cheap", &id]).failure_mentioning("only store containing it");
    c.glance(&["image-download", "--file", "left.raw", &id]).success();
    assert!(c.read("left.raw") == disk(), "the remaining copy is intact");
}

#[test]
fn openstack_image_deactivate_and_reactivate() {
    let c = clients_or_skip!();
    let queued = text(&c.create(&["--disk-format", "raw", "--container-format", "bare", "queued"]), "id");
    let active = c.create(&["--file", DISK_FILE, "--disk-format", "raw", "--container-format", "bare", "img"]);
    assert_eq!(text(&active, "status"), "active");
    let id = text(&active, "id");

    // openstacksdk ignores the status of action calls, so a queued image "deactivates" without
    // an error; the server must still have refused (403) and left it queued.
    c.openstack(&["image", "set", "--deactivate", &queued]).success();
    assert_eq!(text(&c.show(&queued), "status"), "queued");

    c.openstack(&["image", "set", "--deactivate", "img"]).success();
    let listed = c.openstack_json(&["image", "list", "--long"]);
    let status: BTreeMap<String, String> = rows(&listed).iter().map(|r| (text(r, "Name"), text(r, "Status"))).collect();
    assert_eq!(status["img"], "deactivated", "deactivated images stay listed: {listed:#}");
    assert_eq!(status["queued"], "queued");

    c.openstack(&["image", "set", "--activate", &id]).success();
    assert_eq!(text(&c.show(&id), "status"), "active");
}

#[test]
fn openstack_image_delete() {
    let c = clients_or_skip!();
    let one = text(&c.create(&["one"]), "id");
    c.create(&["two"]);
    let guarded = text(&c.create(&["--protected", "guarded"]), "id");

    let deleted = c.openstack(&["image", "delete", "one", "two"]).success();
    assert_eq!(deleted.stdout.trim(), "");
    assert_eq!(c.list_names(&[]), ["guarded"]);
    c.openstack(&["image", "show", &one]).failure_mentioning(&format!("No Image found for {one}"));

    c.openstack(&["image", "delete", "guarded"])
        .failure_mentioning(&format!("Image {guarded} is protected and cannot be deleted."));
    assert_eq!(c.list_names(&[]), ["guarded"]);
    c.openstack(&["image", "set", "--unprotected", "guarded"]).success();
    c.openstack(&["image", "delete", "guarded"]).success();
    c.openstack(&["image", "show", &guarded]).failure_mentioning(&format!("No Image found for {guarded}"));
}

#[test]
fn openstack_image_create_import_with_file_stages_and_imports_the_data() {
    let c = clients_or_skip!();
    let created =
        c.create(&["--import", "--file", DISK_FILE, "--disk-format", "raw", "--container-format", "bare", "imported"]);
    let id = text(&created, "id");
    let image = c.wait_active(&id);
    assert_eq!(image["size"], DISK_SIZE);
    assert_eq!(text(&image, "checksum"), DISK_MD5);
    assert_eq!(text(&image["properties"], "os_hash_value"), DISK_SHA512);
    // Imported, not uploaded: one glance-direct import task ran.
    let tasks = c.openstack_json(&["image", "task", "list"]);
    let kinds: Vec<(String, String)> = rows(&tasks).iter().map(|t| (text(t, "Type"), text(t, "Status"))).collect();
    assert_eq!(kinds, [("api_image_import".to_owned(), "success".to_owned())], "{tasks:#}");
    c.openstack(&["image", "save", "--file", "saved.raw", "imported"]).success();
    assert!(c.read("saved.raw") == disk(), "downloaded data differs from the imported file");
}

/// A loopback web server holding [`disk`] at `/disk.raw`, and the clients against a server
/// whose web-download filter lets it be fetched (loopback, its port).
fn clients_with_a_web_source(runtime: &tokio::runtime::Runtime) -> Option<(Clients, String)> {
    let web = runtime.block_on(WebServer::start());
    let url = web.route("/disk.raw", Reply::Bytes(disk()));
    let port = url.rsplit_once(':').and_then(|(_, rest)| rest.split('/').next()).expect("port").to_owned();
    let config = [
        ("GLINT__IMPORT__FILTERING__ALLOW_PRIVATE_ADDRESSES".to_owned(), "true".to_owned()),
        ("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".to_owned(), format!("[{port}]")),
    ];
    Some((Clients::start_with(&config)?, url))
}

#[test]
fn openstack_image_import_web_download_fetches_the_uri() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some((c, url)) = clients_with_a_web_source(&runtime) else { return };
    let id = text(&c.create(&["--disk-format", "raw", "--container-format", "bare", "fetched"]), "id");
    // openstackclient sends all_stores_must_succeed = false unless told otherwise, which Glance
    // (and Glint) refuse with 400 outside multistore mode, and it exits 0 on that refusal.
    c.openstack(&["image", "import", "--method", "web-download", "--uri", &url, "--disallow-failure", "fetched"])
        .success();
    let image = c.wait_active(&id);
    assert_eq!((image["size"].clone(), text(&image, "checksum")), (DISK_SIZE.into(), DISK_MD5.to_owned()));
    assert_eq!(text(&image["properties"], "os_hash_value"), DISK_SHA512);
}

#[test]
fn openstacksdk_create_image_with_web_download_import_fetches_the_uri() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some((c, url)) = clients_with_a_web_source(&runtime) else { return };
    let args = ["-c".to_owned(), SDK_WEB_DOWNLOAD.to_owned(), c.server.url(), url, "fetched".into()];
    let id = run(&c.bin.join("python"), &args, &c.server).success().stdout.trim().to_owned();
    let image = c.wait_active(&id);
    assert_eq!(text(&image, "name"), "fetched");
    assert_eq!((image["size"].clone(), text(&image, "checksum")), (DISK_SIZE.into(), DISK_MD5.to_owned()));
    assert_eq!(text(&image["properties"], "os_hash_value"), DISK_SHA512);
}

/// A loopback web server holding [`disk`] at `/disk.raw` and `/copy.raw`, and the clients
/// against a multistore server showing locations, with an http store `web` whose filter lets
/// it be read (loopback, its port) next to the filesystem store `local`.
fn clients_with_a_web_store(runtime: &tokio::runtime::Runtime) -> Option<(Clients, String, String)> {
    let web = runtime.block_on(WebServer::start());
    let url = web.route("/disk.raw", Reply::Bytes(disk()));
    let copy = web.route("/copy.raw", Reply::Bytes(disk()));
    let port = url.rsplit_once(':').and_then(|(_, rest)| rest.split('/').next()).expect("port").to_owned();
    let config = [
        ("GLINT__IMAGES__SHOW_MULTIPLE_LOCATIONS", "true".to_owned()),
        ("GLINT__STORAGE__DEFAULT", "local".to_owned()),
        ("GLINT__STORAGE__BACKENDS__LOCAL__TYPE", "filesystem".to_owned()),
        ("GLINT__STORAGE__BACKENDS__LOCAL__PATH", "local".to_owned()),
        ("GLINT__STORAGE__BACKENDS__WEB__TYPE", "http".to_owned()),
        ("GLINT__STORAGE__BACKENDS__WEB__FILTERING__ALLOW_PRIVATE_ADDRESSES", "true".to_owned()),
        ("GLINT__STORAGE__BACKENDS__WEB__FILTERING__ALLOWED_PORTS", format!("[{port}]")),
    ];
    let config: Vec<(String, String)> = config.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Some((Clients::start_with(&config)?, url, copy))
}

#[test]
fn glance_location_add_update_and_delete() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some((c, url, copy)) = clients_with_a_web_store(&runtime) else { return };
    let created =
        properties(&c.glance(&["image-create", "--disk-format", "raw", "--container-format", "bare"]).success().stdout);
    let id = prop(&created, "id").to_owned();
    assert_eq!(prop(&created, "status"), "queued");

    let added = properties(&c.glance(&["location-add", "--url", &url, &id]).success().stdout);
    assert_eq!(prop(&added, "status"), "active");
    assert_eq!(prop(&added, "size"), DISK_SIZE.to_string());
    assert_eq!(prop(&added, "stores"), "web");
    let metadata = r#"{"tier": "cold"}"#;
    c.glance(&["location-add", "--url", &copy, "--metadata", metadata, &id]).success();
    c.glance(&["location-add", "--url", &copy, &id]).failure_mentioning("already exists");

    c.glance(&["location-update", "--url", &copy, "--metadata", r#"{"tier": "hot"}"#, &id]).success();
    let locations: Value = serde_json::from_str(prop(&c.glance_show(&id), "locations")).expect("locations JSON");
    assert_eq!(
        locations,
        serde_json::json!([
            {"url": url, "metadata": {"store": "web"}},
            {"url": copy, "metadata": {"tier": "hot", "store": "web"}},
        ])
    );

    c.glance(&["location-delete", "--url", &url, &id]).success();
    let locations: Value = serde_json::from_str(prop(&c.glance_show(&id), "locations")).expect("locations JSON");
    assert_eq!(locations, serde_json::json!([{"url": copy, "metadata": {"tier": "hot", "store": "web"}}]));
    c.glance(&["location-delete", "--url", &copy, &id]).failure_mentioning("Cannot remove last location in the image.");
    c.glance(&["image-download", "--file", "from-web.raw", &id]).success();
    assert!(c.read("from-web.raw") == disk(), "the data streamed from the web server differs");
}

#[test]
fn glance_add_location_runs_a_location_import_task() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some((c, url, _)) = clients_with_a_web_store(&runtime) else { return };
    let created =
        properties(&c.glance(&["image-create", "--disk-format", "raw", "--container-format", "bare"]).success().stdout);
    let id = prop(&created, "id").to_owned();
    let validation = format!(r#"{{"os_hash_algo": "sha512", "os_hash_value": "{}"}}"#, "0".repeat(128));
    // A hash that does not match: the task fails and the image stays queued, ready for another try.
    c.glance(&["add-location", "--url", &url, "--validation-data", &validation, &id]).success();
    let deadline = Instant::now() + IMPORT_DEADLINE;
    while text(&c.openstack_json(&["image", "task", "list"])[0], "Status") != "failure" {
        assert!(Instant::now() < deadline, "the location task did not fail");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(prop(&c.glance_show(&id), "status"), "queued");
    c.glance(&["add-location", "--url", &url, &id]).success();
    let image = c.wait_active(&id);
    assert_eq!(text(&image["properties"], "os_hash_value"), DISK_SHA512);
}

/// openstacksdk's API 2.17 calls: `add_image_location` on the image argv[2] with the url
/// argv[3] and the sha512 argv[4] as validation data, or (argv[3] = "list") the urls
/// `image_locations` lists, one a line. argv[1] is the endpoint.
const SDK_LOCATIONS: &str = r#"
import sys
import openstack
conn = openstack.connect(auth_type="none", endpoint=sys.argv[1])
if sys.argv[3] == "list":
    for location in conn.image.image_locations(sys.argv[2]):
        print(location.url)
else:
    conn.image.add_image_location(sys.argv[2], sys.argv[3],
                                  validation_data={"os_hash_algo": "sha512", "os_hash_value": sys.argv[4]})
"#;

#[test]
fn openstacksdk_add_image_location_hashes_and_activates_the_image() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some((c, url, _)) = clients_with_a_web_store(&runtime) else { return };
    let id = text(&c.create(&["--disk-format", "raw", "--container-format", "bare", "located"]), "id");
    let sdk = |args: &[&str]| {
        let mut all = vec!["-c".to_owned(), SDK_LOCATIONS.to_owned(), c.server.url()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(&c.bin.join("python"), &all, &c.server)
    };
    sdk(&[&id, &url, DISK_SHA512]).success();
    let image = c.wait_active(&id);
    assert_eq!((image["size"].clone(), text(&image, "checksum")), (DISK_SIZE.into(), DISK_MD5.to_owned()));
    assert_eq!(text(&image["properties"], "os_hash_value"), DISK_SHA512);
    assert_eq!(sdk(&[&id, "list"]).success().stdout.trim(), url);
    let tasks = c.openstack_json(&["image", "task", "list"]);
    let kinds: Vec<(String, String)> = rows(&tasks).iter().map(|t| (text(t, "Type"), text(t, "Status"))).collect();
    assert_eq!(kinds, [("location_import".to_owned(), "success".to_owned())], "{tasks:#}");
    c.openstack(&["image", "save", "--file", "saved.raw", "located"]).success();
    assert!(c.read("saved.raw") == disk(), "downloaded data differs from the web server's");
}

#[test]
fn openstack_reports_server_errors() {
    let c = clients_or_skip!();
    let id = "6d3b4a8e-1f0c-4e7a-9b2d-5c8f0e1a2b3c";
    c.create(&["--id", id, "first"]);
    c.openstack(&["image", "create", "--id", id, "second"])
        .failure_mentioning(&format!("409 Conflict: Image with identifier {id} already exists!"));
    c.openstack(&["image", "set", "--property", "os_glance_x=1", id]).failure_mentioning("ForbiddenException: 403");
    assert_eq!(c.list_names(&[]), ["first"]);
}

// --- glance ---------------------------------------------------------------------------------

#[test]
fn glance_image_create_list_show_update_delete() {
    let c = clients_or_skip!();
    let created = properties(
        &c.glance(&[
            "image-create",
            "--name",
            "gl1",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--os-distro",
            "fedora",
            "--property",
            "foo=bar",
            "--tags",
            "a",
            "b",
            "--visibility",
            "private",
            "--min-ram",
            "64",
        ])
        .success()
        .stdout,
    );
    let id = prop(&created, "id").to_owned();
    uuid::Uuid::parse_str(&id).expect("a UUID id");
    c.glance(&["image-create", "--name", "gl2", "--os-distro", "ubuntu"]).success();

    let shown = c.glance_show(&id);
    for image in [&created, &shown] {
        assert_eq!(prop(image, "name"), "gl1");
        assert_eq!(prop(image, "status"), "queued");
        assert_eq!(prop(image, "visibility"), "private");
        assert_eq!(prop(image, "protected"), "False");
        assert_eq!(prop(image, "disk_format"), "raw");
        assert_eq!(prop(image, "container_format"), "bare");
        assert_eq!(prop(image, "os_distro"), "fedora");
        assert_eq!(prop(image, "foo"), "bar");
        assert_eq!(prop(image, "min_ram"), "64");
        assert_eq!(prop(image, "owner"), "None");
        assert_eq!(glance_tags(image), set(&["a", "b"]));
    }

    assert_eq!(sorted(c.glance_list_names(&[])), ["gl1", "gl2"]);
    assert_eq!(c.glance_list_names(&["--property-filter", "os_distro=fedora"]), ["gl1"]);

    let updated = properties(
        &c.glance(&[
            "image-update",
            "--name",
            "gl1-new",
            "--property",
            "foo=baz",
            "--property",
            "extra=1",
            "--remove-property",
            "os_distro",
            "--min-disk",
            "2",
            &id,
        ])
        .success()
        .stdout,
    );
    for image in [&updated, &c.glance_show(&id)] {
        assert_eq!(prop(image, "name"), "gl1-new");
        assert_eq!(prop(image, "foo"), "baz");
        assert_eq!(prop(image, "extra"), "1");
        assert_eq!(prop(image, "min_disk"), "2");
        assert!(!image.contains_key("os_distro"), "os_distro must be gone: {image:#?}");
        assert_eq!(glance_tags(image), set(&["a", "b"]));
    }

    c.glance(&["image-delete", &id]).success();
    c.glance(&["image-show", &id]).failure_mentioning(&format!("404 Not Found: No image found with ID {id}"));
    assert_eq!(c.glance_list_names(&[]), ["gl2"]);
}

#[test]
fn glance_image_tag_update_and_delete() {
    let c = clients_or_skip!();
    let created = properties(&c.glance(&["image-create", "--name", "tagged", "--tags", "a", "b"]).success().stdout);
    let id = prop(&created, "id").to_owned();

    let added = c.glance(&["image-tag-update", &id, "c"]).success();
    let table = table_rows(&added.stdout);
    assert_eq!(table[0], ["ID", "Tags"], "{}", added.stdout);
    assert_eq!(table[1][0], id);
    assert_eq!(table[1][1], "['a', 'b', 'c']");

    c.glance(&["image-tag-delete", &id, "a"]).success();
    c.glance(&["image-tag-delete", &id, "zzz"]).failure_mentioning("404 Not Found: Tag zzz not found");
    assert_eq!(glance_tags(&c.glance_show(&id)), set(&["b", "c"]));
}

#[test]
fn glance_image_upload_and_download() {
    let c = clients_or_skip!();
    let created = properties(
        &c.glance(&["image-create", "--name", "later", "--disk-format", "raw", "--container-format", "bare"])
            .success()
            .stdout,
    );
    assert_eq!(prop(&created, "status"), "queued");
    let id = prop(&created, "id").to_owned();

    c.glance(&["image-upload", "--file", DISK_FILE, &id]).success();
    let image = c.glance_show(&id);
    assert_eq!(prop(&image, "status"), "active");
    assert_eq!(prop(&image, "size"), DISK_SIZE.to_string());
    assert_eq!(prop(&image, "checksum"), DISK_MD5);
    assert_eq!(prop(&image, "os_hash_algo"), "sha512");
    assert_eq!(prop(&image, "os_hash_value"), DISK_SHA512);

    c.glance(&["image-download", "--file", "downloaded.raw", &id]).success();
    assert!(c.read("downloaded.raw") == disk(), "downloaded data differs from the upload");
}

#[test]
fn glance_image_deactivate_and_reactivate() {
    let c = clients_or_skip!();
    let queued = properties(&c.glance(&["image-create", "--name", "queued"]).success().stdout);
    c.glance(&["image-deactivate", prop(&queued, "id")])
        .failure_mentioning("403 Forbidden: Not allowed to deactivate image in status 'queued'");

    let created = properties(
        &c.glance(&[
            "image-create",
            "--name",
            "img",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            DISK_FILE,
        ])
        .success()
        .stdout,
    );
    assert_eq!(prop(&created, "status"), "active");
    let id = prop(&created, "id").to_owned();

    c.glance(&["image-deactivate", &id]).success();
    assert_eq!(prop(&c.glance_show(&id), "status"), "deactivated");
    // Admins (everyone in no-auth mode) may still download a deactivated image.
    c.glance(&["image-download", "--file", "deactivated.raw", &id]).success();
    assert!(c.read("deactivated.raw") == disk(), "downloaded data differs from the upload");
    c.glance(&["image-reactivate", &id]).success();
    assert_eq!(prop(&c.glance_show(&id), "status"), "active");
}

#[test]
fn glance_image_list_sorts_filters_and_pages() {
    let c = clients_or_skip!();
    c.glance(&["image-create", "--name", "b-img", "--visibility", "private", "--tags", "x"]).success();
    c.glance(&["image-create", "--name", "c-img"]).success();
    c.glance(&["image-create", "--name", "a-img", "--visibility", "public", "--tags", "x"]).success();

    // Sorting and limits are done by the server here.
    assert_eq!(c.glance_list_names(&["--sort-key", "name", "--sort-dir", "asc"]), ["a-img", "b-img", "c-img"]);
    assert_eq!(c.glance_list_names(&["--sort-key", "name", "--sort-dir", "asc", "--limit", "2"]), ["a-img", "b-img"]);
    // One image per page: the client follows the `next` links to the end.
    assert_eq!(c.glance_list_names(&["--sort", "name:desc", "--page-size", "1"]), ["c-img", "b-img", "a-img"]);
    assert_eq!(c.glance_list_names(&["--tag", "x", "--visibility", "private"]), ["b-img"]);
}

#[test]
fn glance_reports_server_errors() {
    let c = clients_or_skip!();
    let id = "0b8f6a52-3c1d-4e9f-8a7b-6c5d4e3f2a1b";
    c.glance(&["image-create", "--id", id, "--name", "first"]).success();
    c.glance(&["image-create", "--id", id, "--name", "second"])
        .failure_mentioning(&format!("409 Conflict: Image with identifier {id} already exists!"));
    c.glance(&["image-update", "--property", "os_glance_x=1", id])
        .failure_mentioning("403 Forbidden: Attribute 'os_glance_x' is reserved.");
    assert_eq!(c.glance_list_names(&[]), ["first"]);
}

/// `openstack image add project` and `image set --accept --project` look the project up in
/// Keystone first: see the Keystone tests at the end for them.
#[test]
fn openstack_image_member_list_shows_members_and_their_status() {
    let c = clients_or_skip!();
    let id = text(&c.create(&["--shared", "offered"]), "id");
    c.glance(&["member-create", &id, "p2"]).success();
    c.glance(&["member-update", &id, "p2", "accepted"]).success();
    let members = c.openstack_json(&["image", "member", "list", &id]);
    let members: Vec<(String, String)> =
        rows(&members).iter().map(|r| (text(r, "Member ID"), text(r, "Status"))).collect();
    assert_eq!(members, [("p2".to_owned(), "accepted".to_owned())]);
    let private = text(&c.create(&["--private", "mine"]), "id");
    c.glance(&["member-create", &private, "p2"]).failure_mentioning("Only shared images have members");
}

#[test]
fn glance_member_create_update_list_delete() {
    let c = clients_or_skip!();
    let id = text(&c.create(&["--shared", "offered"]), "id");
    c.glance(&["member-create", &id, "p3"]).success();
    c.glance(&["member-update", &id, "p3", "rejected"]).success();
    let listed = table_rows(&c.glance(&["member-list", "--image-id", &id]).success().stdout);
    assert_eq!(listed[1..], [vec![id.clone(), "p3".to_owned(), "rejected".to_owned()]], "{listed:?}");
    c.glance(&["member-delete", &id, "p3"]).success();
    assert_eq!(table_rows(&c.glance(&["member-list", "--image-id", &id]).success().stdout).len(), 1, "only the header");
}

// --- with Keystone ----------------------------------------------------------------------------

macro_rules! keystone_clients_or_skip {
    ($config:expr) => {
        match Clients::start_keystone($config) {
            Some(started) => started,
            None => return,
        }
    };
}

#[test]
fn openstack_with_keystone_creates_lists_shows_sets_and_deletes_as_the_token_s_project() {
    let (c, keystone) = keystone_clients_or_skip!(&[]);
    let alice = c.logged_in(keystone, User::Alice);
    let created = alice.openstack_json(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        DISK_FILE,
        "--private",
        "alices",
    ]);
    let id = text(&created, "id");
    assert_eq!(text(&created, "owner"), keystone.project_of(User::Alice));
    assert_eq!(text(&created, "status"), "active");
    assert_eq!(alice.list_ids(&[]), set(&[&id]));
    alice.openstack(&["image", "set", "--property", "os_distro=cirros", "--name", "renamed", &id]).success();
    let shown = alice.openstack_json(&["image", "show", &id]);
    assert_eq!(
        (text(&shown, "name"), shown["properties"]["os_distro"].as_str()),
        ("renamed".to_owned(), Some("cirros"))
    );

    let bob = c.logged_in(keystone, User::Bob);
    assert!(bob.list_ids(&[]).is_empty(), "another project lists no private image");
    bob.openstack(&["image", "show", &id]).failure_mentioning("No Image found");
    let rita = c.logged_in(keystone, User::Rita);
    assert_eq!(rita.list_ids(&[]), set(&[&id]), "the project's reader lists it");
    rita.openstack(&["image", "delete", &id]).failure_mentioning("403");

    alice.openstack(&["image", "delete", &id]).success();
    assert!(alice.list_ids(&[]).is_empty());
}

#[test]
fn openstack_image_add_project_and_set_accept_share_an_image() {
    let (c, keystone) = keystone_clients_or_skip!(&[]);
    let (alice, bob) = (c.logged_in(keystone, User::Alice), c.logged_in(keystone, User::Bob));
    let id = text(&alice.openstack_json(&["image", "create", "--shared", "to-share"]), "id");
    let two = keystone.project("two");
    let added = alice.openstack_json(&["image", "add", "project", &id, two]);
    assert_eq!((text(&added, "member_id"), text(&added, "status")), (two.to_owned(), "pending".to_owned()));
    assert!(bob.list_ids(&[]).is_empty(), "pending images are not in the member's default list");
    assert_eq!(bob.list_ids(&["--member-status", "pending"]), set(&[&id]));

    bob.openstack(&["image", "set", "--accept", &id]).success();
    assert_eq!(bob.list_ids(&[]), set(&[&id]));
    let members = alice.openstack_json(&["image", "member", "list", &id]);
    let members: Vec<(String, String)> =
        rows(&members).iter().map(|r| (text(r, "Member ID"), text(r, "Status"))).collect();
    assert_eq!(members, [(two.to_owned(), "accepted".to_owned())]);
    // The owner cannot answer for the member project.
    alice.openstack(&["image", "set", "--reject", "--project", two, &id]).failure_mentioning("403");

    bob.openstack(&["image", "set", "--reject", &id]).success();
    assert!(bob.list_ids(&[]).is_empty());
    alice.openstack(&["image", "remove", "project", &id, two]).success();
    bob.openstack(&["image", "show", &id]).failure_mentioning("No Image found");
}

#[test]
fn openstack_and_glance_with_keystone_report_quota_refusals() {
    let quota = [
        ("GLINT__QUOTAS__ENABLED".to_owned(), "true".to_owned()),
        ("GLINT__QUOTAS__DEFAULT__IMAGE_COUNT_TOTAL".to_owned(), "1".to_owned()),
    ];
    let (c, keystone) = keystone_clients_or_skip!(&quota);
    let alice = c.logged_in(keystone, User::Alice);
    alice.openstack_json(&["image", "create", "first"]);
    alice.openstack(&["image", "create", "second"]).failure_mentioning("413");
    alice.glance(&["image-create", "--name", "third"]).failure_mentioning("image_count_total");
    // The limit is per project: bob's project has its own.
    c.logged_in(keystone, User::Bob).openstack_json(&["image", "create", "bobs"]);
}

#[test]
fn glance_with_keystone_works_as_a_member_and_is_refused_as_a_reader() {
    let (c, keystone) = keystone_clients_or_skip!(&[]);
    let alice = c.logged_in(keystone, User::Alice);
    let created = properties(
        &alice
            .glance(&[
                "image-create",
                "--name",
                "g",
                "--disk-format",
                "raw",
                "--container-format",
                "bare",
                "--file",
                DISK_FILE,
            ])
            .success()
            .stdout,
    );
    assert_eq!(prop(&created, "owner"), keystone.project_of(User::Alice));
    let rita = c.logged_in(keystone, User::Rita);
    let listed = listing(&rita.glance(&["image-list"]).success().stdout);
    assert_eq!(listed.iter().map(|(_, name)| name.as_str()).collect::<Vec<_>>(), ["g"]);
    rita.glance(&["image-create", "--name", "r"]).failure_mentioning("403 Forbidden");
    rita.glance(&["image-download", "--file", "r.raw", prop(&created, "id")]).failure_mentioning("403 Forbidden");
}

#[test]
fn openstack_with_a_system_scoped_token_finds_no_image_and_may_not_create_one() {
    let (c, keystone) = keystone_clients_or_skip!(&[]);
    let alice = c.logged_in(keystone, User::Alice);
    let id = text(&alice.openstack_json(&["image", "create", "--private", "alices"]), "id");
    let system = c.logged_in_unscoped(keystone);
    // The client asks for the id (404: the image does not exist for a system token), then
    // looks for a name, which listing refuses (403), as Glance answers them both.
    let show = system.openstack(&["--debug", "--os-system-scope", "all", "image", "show", &id]);
    show.failure_mentioning("get_images").failure_mentioning("RESP: [404]");
    system.openstack(&["--os-system-scope", "all", "image", "create", "sys"]).failure_mentioning("403");
    assert_eq!(alice.list_ids(&[]), set(&[&id]), "nothing was created");
}

// Last, so that it sees the helper macros above.
mod cache;
mod conversions;
mod glance_download;
mod metadefs;
mod policy;

/// `GLINT__...` variables for a filesystem store `fast` (the default) and an RBD store `ceph`
/// in the test cluster, with `direct_url` shown as Nova's RBD image backend wants it.
fn filesystem_and_rbd(ceph: &crate::support::ceph::Ceph) -> Vec<(String, String)> {
    let rbd = ceph.config();
    let store = |key: &str| format!("GLINT__STORAGE__BACKENDS__CEPH__{key}");
    let path = |p: Option<std::path::PathBuf>| p.expect("set").display().to_string();
    vec![
        ("GLINT__STORAGE__DEFAULT".to_owned(), "fast".to_owned()),
        ("GLINT__STORAGE__BACKENDS__FAST__TYPE".to_owned(), "filesystem".to_owned()),
        ("GLINT__STORAGE__BACKENDS__FAST__PATH".to_owned(), "fast".to_owned()),
        (store("TYPE"), "rbd".into()),
        (store("POOL"), rbd.pool),
        (store("USER"), rbd.user),
        (store("CONF_FILE"), path(rbd.conf_file)),
        (store("KEYRING"), path(rbd.keyring)),
        (store("CHUNK_SIZE"), rbd.chunk_size.to_string()),
        ("GLINT__IMAGES__SHOW_IMAGE_DIRECT_URL".to_owned(), "true".to_owned()),
    ]
}

#[test]
fn glance_image_create_into_rbd_gives_a_snapshot_nova_can_clone() {
    let Some(ceph) = crate::support::ceph::Ceph::get() else { return };
    let Some(c) = Clients::start_with(&filesystem_and_rbd(ceph)) else { return };
    let args = ["image-create", "--store", "ceph", "--disk-format", "raw", "--container-format", "bare", "--file"];
    let created = properties(&c.glance(&[&args[..], &[DISK_FILE]].concat()).success().stdout);
    let id = prop(&created, "id").to_owned();
    assert_eq!(prop(&created, "stores"), "ceph");
    assert_eq!(prop(&created, "os_hash_value"), DISK_SHA512);
    let direct_url = prop(&created, "direct_url").to_owned();
    assert_eq!(direct_url, format!("rbd://{}/images/{id}/snap", ceph.fsid));

    // Nova's RBD image backend clones the location's snapshot for a copy-on-write boot disk.
    let clone = format!("images/{id}_disk");
    ceph.rbd(&["clone", &format!("images/{id}@snap"), &clone]);
    c.glance(&["image-delete", &id]).failure_mentioning("in use");
    assert_eq!(prop(&c.glance_show(&id), "status"), "active");
    ceph.rbd(&["rm", &clone]);

    c.glance(&["image-download", "--file", "from-rbd.raw", &id]).success();
    assert!(c.read("from-rbd.raw") == disk(), "glance image-download returned other bytes");
    c.glance(&["image-delete", &id]).success();
    assert!(!ceph.pool().list().expect("list").contains(&id), "the RBD image is gone");
}

#[test]
fn glance_copy_image_moves_data_between_the_filesystem_and_rbd() {
    let Some(ceph) = crate::support::ceph::Ceph::get() else { return };
    let Some(c) = Clients::start_with(&filesystem_and_rbd(ceph)) else { return };
    let created = properties(
        &c.glance(&["image-create", "--disk-format", "raw", "--container-format", "bare", "--file", DISK_FILE])
            .success()
            .stdout,
    );
    let id = prop(&created, "id").to_owned();
    c.glance(&["image-import", &id, "--import-method", "copy-image", "--stores", "ceph"]).success();
    let deadline = std::time::Instant::now() + CLI_DEADLINE;
    while c.glance_show(&id).get("stores").map(String::as_str) != Some("ceph,fast") {
        assert!(std::time::Instant::now() < deadline, "copy-image did not finish: {:?}", c.glance_show(&id));
        std::thread::sleep(Duration::from_millis(300));
    }
    c.glance(&["stores-delete", "--store", "fast", &id]).success();
    c.glance(&["image-download", "--file", "copied.raw", &id]).success();
    assert!(c.read("copied.raw") == disk(), "the copy in rbd differs");
    let pool = ceph.pool();
    let snap = pool.open_read_only(&id, Some("snap")).expect("the copy has its snapshot");
    assert_eq!(snap.size().expect("size"), disk().len() as u64);
}
