//! End to end: glance-download between two regions. Two `glint serve` processes on loopback,
//! each with its own SQLite database and filesystem store, both validating tokens with the
//! test Keystone, whose catalog names them the image endpoints of RegionOne and RegionTwo.
//! The unmodified `glance image-create-via-import --import-method glance-download` asks
//! RegionOne for a copy of a RegionTwo image; RegionOne finds RegionTwo in the catalog of the
//! caller's token and reads the image with that token.

use super::*;

/// Every import method, glance-download (opt-in) included.
const ALL_METHODS: &str = r#"["glance-direct", "web-download", "glance-download", "copy-image"]"#;

/// Two regions registered in the catalog; the catalog stays theirs while this lives.
struct Regions {
    /// The importing region.
    one: Clients,
    /// The region whose images are copied.
    two: Clients,
    keystone: &'static Keystone,
    runtime: tokio::runtime::Runtime,
    _catalog: std::sync::MutexGuard<'static, ()>,
}

/// RegionTwo, then RegionOne with glance-download on and the URL filter `filter(port of
/// RegionTwo)`; `None` when Keystone or the clients are unavailable outside CI.
fn regions(filter: impl FnOnce(u16) -> Vec<(String, String)>) -> Option<Regions> {
    let keystone = keystone()?;
    let catalog = keystone.catalog();
    let (two, _) = Clients::start_keystone(&[])?;
    let port = two.server.url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("RegionTwo's port");
    let mut config = vec![("GLINT__IMPORT__ENABLED_IMPORT_METHODS".to_owned(), ALL_METHODS.to_owned())];
    config.extend(filter(port));
    let (one, _) = Clients::start_keystone(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(keystone.register_image_endpoint("RegionOne", &one.server.url()));
    runtime.block_on(keystone.register_image_endpoint("RegionTwo", &two.server.url()));
    Some(Regions { one, two, keystone, runtime, _catalog: catalog })
}

/// The filter that lets RegionOne reach RegionTwo on the loopback address and its port.
fn loopback_allowed(port: u16) -> Vec<(String, String)> {
    vec![
        ("GLINT__IMPORT__FILTERING__ALLOW_PRIVATE_ADDRESSES".to_owned(), "true".to_owned()),
        ("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".to_owned(), format!("[{port}]")),
    ]
}

macro_rules! regions_or_skip {
    ($filter:expr) => {
        match regions($filter) {
            Some(regions) => regions,
            None => return,
        }
    };
}

impl Regions {
    /// A RegionTwo image of alice's with the test data and the properties `with` (`key=value`).
    fn remote_image(&self, with: &[&str]) -> String {
        let mut args = vec!["image-create", "--name", "far", "--disk-format", "raw", "--container-format", "bare"];
        for property in with {
            args.extend(["--property", property]);
        }
        args.extend(["--file", DISK_FILE]);
        let created = properties(&self.two.logged_in(self.keystone, User::Alice).glance(&args).success().stdout);
        assert_eq!(prop(&created, "status"), "active");
        prop(&created, "id").to_owned()
    }

    /// `glance image-create-via-import --import-method glance-download` in RegionOne as alice.
    fn import(&self, region: &str, remote_id: &str) -> Run {
        self.one.logged_in(self.keystone, User::Alice).glance(&[
            "image-create-via-import",
            "--name",
            "near",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--import-method",
            "glance-download",
            "--remote-region",
            region,
            "--remote-image-id",
            remote_id,
        ])
    }

    /// RegionOne's image `id` and its import task once the task has ended.
    fn finished(&self, id: &str) -> (BTreeMap<String, String>, Value) {
        let alice = self.one.logged_in(self.keystone, User::Alice);
        let token = self.runtime.block_on(self.keystone.token(User::Alice));
        let url = format!("{}/v2/images/{id}/tasks", self.one.server.url());
        let deadline = Instant::now() + IMPORT_DEADLINE;
        loop {
            let tasks: Value = self.runtime.block_on(async {
                let response = reqwest::Client::new().get(&url).header("X-Auth-Token", &token).send().await;
                response.expect("GET tasks").json().await.expect("tasks JSON")
            });
            let task = tasks["tasks"][0].clone();
            if matches!(task["status"].as_str(), Some("success" | "failure")) {
                return (properties(&alice.glance(&["image-show", id]).success().stdout), task);
            }
            assert!(
                Instant::now() < deadline,
                "the import of {id} did not end: {tasks:#}\n{}",
                self.one.server.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Imports `remote_id` from `region`, which must be accepted and then fail with a message
    /// containing `expected`, leaving the image queued without data. The task's message.
    #[track_caller]
    fn import_fails(&self, region: &str, remote_id: &str, expected: &str) -> String {
        let accepted = properties(&self.import(region, remote_id).success().stdout);
        let (image, task) = self.finished(prop(&accepted, "id"));
        assert_eq!(task["status"], "failure", "{task:#}");
        let message = task["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{message:?} should mention {expected:?}");
        assert_eq!(prop(&image, "status"), "queued", "{image:?}");
        assert_eq!(prop(&image, "disk_format"), "qcow2", "the remote formats are not kept: {image:?}");
        assert!(image.get("checksum").is_none_or(|c| c == "None"), "no data: {image:?}");
        assert!(!image.contains_key("os_glance_import_task"), "the lock is released: {image:?}");
        message.to_owned()
    }
}

#[test]
fn glance_download_copies_a_remote_regions_image_with_its_checksum_formats_and_glance_s_properties() {
    let r = regions_or_skip!(loopback_allowed);
    let remote = r.remote_image(&[
        "hw_disk_bus=scsi",
        "os_distro=cirros",
        "trait:CUSTOM_GLINT=required",
        "os_type=linux",
        "architecture=x86_64",
    ]);
    let accepted = properties(&r.import("RegionTwo", &remote).success().stdout);
    let (image, task) = r.finished(prop(&accepted, "id"));
    assert_eq!(task["status"], "success", "{task:#}\n{}", r.one.server.output());
    assert_eq!(task["input"]["import_req"]["method"]["glance_region"], "RegionTwo");
    assert!(task["input"].get("caller").is_none(), "the caller's token is never shown: {task:#}");
    assert_eq!(prop(&image, "status"), "active");
    assert_eq!((prop(&image, "checksum"), prop(&image, "os_hash_value")), (DISK_MD5, DISK_SHA512));
    assert_eq!(prop(&image, "size"), DISK_SIZE.to_string());
    assert_eq!((prop(&image, "disk_format"), prop(&image, "container_format")), ("raw", "bare"));
    assert_eq!((prop(&image, "hw_disk_bus"), prop(&image, "os_distro")), ("scsi", "cirros"));
    assert_eq!((prop(&image, "trait:CUSTOM_GLINT"), prop(&image, "os_type")), ("required", "linux"));
    assert!(!image.contains_key("architecture"), "only the configured prefixes are copied: {image:?}");
    assert_ne!(prop(&image, "id"), remote, "a new image of RegionOne's");
    let alice = r.one.logged_in(r.keystone, User::Alice);
    alice.glance(&["image-download", "--file", "copied.raw", prop(&image, "id")]).success();
    assert!(r.one.read("copied.raw") == disk(), "RegionOne serves other bytes than RegionTwo's");
}

#[test]
fn glance_download_of_an_id_that_is_not_a_uuid_is_refused_with_400() {
    let r = regions_or_skip!(loopback_allowed);
    r.import("RegionTwo", "not-a-uuid").failure_mentioning("Remote image id does not look like a UUID: not-a-uuid");
}

#[test]
fn glance_download_from_a_region_without_an_image_endpoint_fails_the_task_and_requeues_the_image() {
    let r = regions_or_skip!(loopback_allowed);
    let remote = r.remote_image(&[]);
    r.import_fails("RegionNine", &remote, "public glance endpoint not found for region RegionNine");
}

#[test]
fn glance_download_of_a_missing_remote_image_fails_the_task_and_requeues_the_image() {
    let r = regions_or_skip!(loopback_allowed);
    let missing = uuid::Uuid::new_v4().to_string();
    r.import_fails("RegionTwo", &missing, &format!("Remote image {missing} was not found in region RegionTwo"));
}

#[test]
fn glance_download_of_a_remote_image_that_is_not_active_fails_the_task_and_requeues_the_image() {
    let r = regions_or_skip!(loopback_allowed);
    let two = r.two.logged_in(r.keystone, User::Alice);
    let queued = properties(&two.glance(&["image-create", "--name", "empty"]).success().stdout);
    r.import_fails("RegionTwo", prop(&queued, "id"), "Source image status should be active instead of queued");
}

#[test]
fn glance_download_refuses_a_loopback_endpoint_unless_the_url_filter_allows_it() {
    // RegionTwo's port is allowed, its loopback address is not (the default).
    let port_only = |port: u16| vec![("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".to_owned(), format!("[{port}]"))];
    let r = regions_or_skip!(port_only);
    let remote = r.remote_image(&[]);
    let message = r.import_fails("RegionTwo", &remote, "Processed URI for glance-download does not pass filtering");
    assert!(message.contains("127.0.0.1 is a loopback address"), "{message}");
}
