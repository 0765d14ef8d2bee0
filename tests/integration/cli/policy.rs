//! End to end: an operator's policy file and property protections, through the unmodified
//! `openstack` client with Keystone tokens, and a broken policy file refusing to start.

use std::process::Command;

use super::*;

/// The clients against a server in keystone mode whose `[auth] policy_file` holds `rules`
/// and, when given, whose property protection file holds `protections`.
fn with_policy(rules: &str, protections: Option<&str>) -> Option<(Clients, &'static Keystone, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, rules).expect("write the policy file");
    let mut config = vec![("GLINT__AUTH__POLICY_FILE".to_owned(), policy.display().to_string())];
    if let Some(protections) = protections {
        let file = dir.path().join("property-protections.conf");
        std::fs::write(&file, protections).expect("write the protection file");
        config.push(("GLINT__IMAGES__PROPERTY_PROTECTION_FILE".to_owned(), file.display().to_string()));
    }
    let (clients, keystone) = Clients::start_keystone(&config)?;
    Some((clients, keystone, dir))
}

macro_rules! policy_clients_or_skip {
    ($rules:expr, $protections:expr) => {
        match with_policy($rules, $protections) {
            Some(started) => started,
            None => return,
        }
    };
}

#[test]
fn a_policy_can_deny_the_tasks_api_even_to_admins() {
    let (c, keystone, _dir) = policy_clients_or_skip!("tasks_api_access: \"!\"\n", None);
    let admin = c.logged_in(keystone, User::Admin);
    admin.openstack(&["image", "task", "list"]).failure_mentioning("tasks_api_access");
    admin.openstack_json(&["image", "list"]);
}

#[test]
fn a_policy_can_let_members_publicize_images() {
    let (c, keystone, _dir) = policy_clients_or_skip!("\"publicize_image\": \"role:member\"\n", None);
    let alice = c.logged_in(keystone, User::Alice);
    let created = alice.openstack_json(&["image", "create", "--public", "alices-public"]);
    assert_eq!(text(&created, "visibility"), "public");
    let bob = c.logged_in(keystone, User::Bob);
    assert!(bob.list_ids(&[]).contains(&text(&created, "id")), "public images are listed for everyone");
}

#[test]
fn a_policy_can_keep_downloads_for_admins() {
    let (c, keystone, _dir) = policy_clients_or_skip!("download_image: rule:context_is_admin\n", None);
    let alice = c.logged_in(keystone, User::Alice);
    let created = alice.openstack_json(&["image", "create", "--disk-format", "raw", "--file", DISK_FILE, "mine"]);
    let id = text(&created, "id");
    // openstack image save reads the 403's body as image data (a checksum mismatch): glance says it.
    alice.glance(&["image-download", "--file", "alice.raw", &id]).failure_mentioning("403");
    let admin = c.logged_in(keystone, User::Admin);
    admin.openstack(&["image", "save", "--file", "admin.raw", &id]).success();
    assert_eq!(c.read("admin.raw"), c.read(DISK_FILE));
}

#[test]
fn property_protections_hide_a_property_from_non_admins_and_refuse_their_writes() {
    let protections = "[^secret_.*]\ncreate = admin\nread = admin\nupdate = admin\ndelete = admin\n\n\
                       [.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n";
    let (c, keystone, _dir) = policy_clients_or_skip!("{}\n", Some(protections));
    let admin = c.logged_in(keystone, User::Admin);
    let created = admin.openstack_json(&[
        "image",
        "create",
        "--public",
        "--property",
        "secret_key=s3cr3t",
        "--property",
        "os_distro=debian",
        "shared-one",
    ]);
    let id = text(&created, "id");
    assert_eq!(admin.openstack_json(&["image", "show", &id])["properties"]["secret_key"], "s3cr3t");
    let alice = c.logged_in(keystone, User::Alice);
    let seen = alice.openstack_json(&["image", "show", &id]);
    assert!(seen["properties"].get("secret_key").is_none(), "{seen:#}");
    assert_eq!(seen["properties"]["os_distro"], "debian");
    let mine = text(&alice.openstack_json(&["image", "create", "alices"]), "id");
    alice.openstack(&["image", "set", "--property", "secret_other=x", &mine]).failure_mentioning("403");
    alice.openstack(&["image", "set", "--property", "os_version=12", &mine]).success();
}

#[test]
fn a_broken_policy_file_stops_start_up_naming_the_line_and_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "get_image: \"@\"\ncopy_image: \"role:admin or (role:member\"\n").expect("write");
    for args in [&["policy", "show"][..], &["serve"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_glint"))
            .args(args)
            .current_dir(dir.path())
            .env("GLINT__AUTH__POLICY_FILE", &policy)
            .env("GLINT__SERVER__BIND", "127.0.0.1:0")
            .output()
            .expect("run glint");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "glint {args:?} started with a broken policy");
        assert!(stderr.contains("policy.yaml:2: rule \"copy_image\": a '(' is not closed"), "{args:?}: {stderr}");
    }
}

#[test]
fn glint_policy_show_prints_the_effective_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "copy_image: role:member\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_glint"))
        .args(["policy", "show"])
        .env("GLINT__AUTH__POLICY_FILE", &policy)
        .output()
        .expect("run glint");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("\"copy_image\": \"role:member\"  # overridden\n"), "{stdout}");
    assert!(stdout.contains("\"publicize_image\": \"rule:context_is_admin\"\n"), "{stdout}");
}
