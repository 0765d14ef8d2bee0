//! Definition files: `glint metadefs load|export` and the default catalog. Loading Glance-format
//! files and exporting them gives the same definitions back; loading twice changes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use glint_core::metadefs::catalog;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use super::ns_path;
use crate::support::{TestApp, on_every_database};

on_every_database!(
    loading_then_exporting_gives_the_same_definitions_back,
    loading_twice_changes_nothing,
    reloading_changed_files_updates_in_place,
    loaded_definitions_render_as_glance_renders_them,
    default_catalog_is_loaded_into_an_empty_catalog_only,
);

const TABLES: [&str; 6] = [
    "metadef_namespaces",
    "metadef_objects",
    "metadef_properties",
    "metadef_tags",
    "metadef_resource_types",
    "metadef_namespace_resource_types",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/metadefs/fixtures")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn row_counts(app: &TestApp) -> Vec<i64> {
    let backend = app.db.get_database_backend();
    let mut counts = Vec::new();
    for table in TABLES {
        let row = app
            .db
            .query_one_raw(Statement::from_string(backend, format!("SELECT COUNT(*) AS n FROM {table}")))
            .await
            .unwrap()
            .unwrap();
        counts.push(row.try_get::<i64>("", "n").unwrap());
    }
    counts
}

/// Everything the API shows of the loaded namespaces, timestamps included.
async fn api_snapshot(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for name in ["Test::Compute::Watchdog", "Test::Compute::Quota", "Test::Compute::GuestShutdownBehavior"] {
        out.push(app.get_json(&ns_path(name, "")).await);
    }
    out.push(app.get_json("/v2/metadefs/resource_types").await);
    out
}

async fn loading_then_exporting_gives_the_same_definitions_back(app: TestApp) {
    let report = catalog::load_dir(&app.db, &fixtures()).await.unwrap();
    assert_eq!(report.files, 3);
    let out = tempfile::tempdir().unwrap();
    assert_eq!(catalog::export_dir(&app.db, out.path()).await.unwrap(), 3);
    for (_, fixture) in catalog::read(&fixtures()).unwrap() {
        let name = fixture["namespace"].as_str().unwrap();
        let exported = read_json(&out.path().join(format!("{name}.json")));
        assert_eq!(exported, fixture, "{name}");
    }
}

async fn loading_twice_changes_nothing(app: TestApp) {
    catalog::load_dir(&app.db, &fixtures()).await.unwrap();
    let (counts, snapshot) = (row_counts(&app).await, api_snapshot(&app).await);
    assert_eq!(counts, [3, 2, 2, 2, 3, 5]);
    let again = catalog::load_dir(&app.db, &fixtures()).await.unwrap();
    assert_eq!((again.inserted, again.updated), (0, 0));
    assert_eq!(row_counts(&app).await, counts);
    assert_eq!(api_snapshot(&app).await, snapshot);
}

async fn reloading_changed_files_updates_in_place(app: TestApp) {
    catalog::load_dir(&app.db, &fixtures()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut file = read_json(&fixtures().join("compute-watchdog.json"));
    file["description"] = json!("changed");
    file["properties"]["watchdog_action"]["default"] = json!("reset");
    file["tags"].as_array_mut().unwrap().push(json!({"name": "added"}));
    file["resource_type_associations"][2]["prefix"] = json!("hw_watchdog:");
    std::fs::write(dir.path().join("watchdog.json"), file.to_string()).unwrap();
    let report = catalog::load_dir(&app.db, dir.path()).await.unwrap();
    assert_eq!((report.inserted, report.updated), (1, 3));
    assert_eq!(row_counts(&app).await, [3, 2, 2, 3, 3, 5]);
    let shown = app.get_json(&ns_path("Test::Compute::Watchdog", "")).await;
    assert_eq!(shown["description"], "changed");
    assert!(shown["updated_at"].is_string(), "a changed row records when");
    assert_eq!(shown["properties"]["watchdog_action"]["default"], "reset");
    let flavor = shown["resource_type_associations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "OS::Nova::Flavor")
        .unwrap()
        .clone();
    assert_eq!(flavor["prefix"], "hw_watchdog:");
    let out = tempfile::tempdir().unwrap();
    catalog::export_dir(&app.db, out.path()).await.unwrap();
    assert_eq!(read_json(&out.path().join("Test::Compute::Watchdog.json")), file);
}

async fn loaded_definitions_render_as_glance_renders_them(app: TestApp) {
    catalog::load_dir(&app.db, &fixtures()).await.unwrap();
    let shutdown = app.get_json(&ns_path("Test::Compute::GuestShutdownBehavior", "")).await;
    assert_eq!(
        (&shutdown["visibility"], &shutdown["protected"], &shutdown["owner"]),
        (&json!("private"), &json!(false), &json!("admin"))
    );
    assert!(shutdown.get("updated_at").is_none(), "loaded rows have no updated_at");
    let reader = app.as_project("p1", "reader");
    assert_eq!(
        reader.get(&ns_path("Test::Compute::GuestShutdownBehavior", "")).await.status(),
        404,
        "no visibility: admins only"
    );
    let watchdog = reader.get_json(&ns_path("Test::Compute::Watchdog", "?resource_type=OS::Nova::Flavor")).await;
    assert_eq!(watchdog["properties"]["hw:watchdog_action"]["default"], "disabled");
    let quota = reader.get_json(&ns_path("Test::Compute::Quota", "/objects/CPU Limits")).await;
    assert_eq!(quota["required"], json!(["quota:cpu_period"]));
    assert_eq!(quota["properties"]["quota:cpu_period"]["maximum"], 1000000);
    let types = app.get_json("/v2/metadefs/resource_types").await;
    assert!(types["resource_types"].as_array().unwrap().iter().all(|t| t.get("updated_at").is_none()));
}

async fn default_catalog_is_loaded_into_an_empty_catalog_only(app: TestApp) {
    let report = catalog::load_defaults_if_empty(&app.db).await.unwrap().expect("loaded into the empty catalog");
    assert_eq!(report.files, catalog::DEFAULTS.len());
    let types = app.as_project("p1", "reader").get_json("/v2/metadefs/resource_types").await;
    let names: Vec<&str> =
        types["resource_types"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    for expected in ["OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let hardware = app
        .as_project("p1", "reader")
        .get_json(&ns_path("Glint::VirtualHardware", "?resource_type=OS::Glance::Image"))
        .await;
    for key in ["hw_disk_bus", "hw_vif_model", "hw_qemu_guest_agent"] {
        assert!(hardware["properties"].get(key).is_some(), "{key}");
    }
    assert!(catalog::load_defaults_if_empty(&app.db).await.unwrap().is_none());
    for ns in ["Glint::VirtualHardware", "Glint::OperatingSystem", "Glint::GuestShutdown"] {
        app.request(reqwest::Method::PUT, &ns_path(ns, "")).json(&json!({"namespace": ns})).send().await.unwrap();
        assert_eq!(app.delete(&ns_path(ns, "")).await.status(), 204);
    }
    assert!(catalog::load_defaults_if_empty(&app.db).await.unwrap().is_none(), "an operator's deletions stay deleted");
}

/// Runs the real binary with a SQLite database in `dir`.
fn glint(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_glint"))
        .args(args)
        .current_dir(dir)
        .env("GLINT__DATABASE__URL", format!("sqlite://{}?mode=rwc", dir.join("glint.db").display()))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run glint");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "glint {args:?} failed:\n{text}");
    text
}

#[test]
fn glint_metadefs_load_and_export_commands_round_trip_and_migrate_seeds_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    glint(dir.path(), &["migrate"]);
    let fixtures = fixtures();
    let first = glint(dir.path(), &["metadefs", "load", fixtures.to_str().unwrap()]);
    assert!(first.contains("loaded 3 files"), "{first}");
    let second = glint(dir.path(), &["metadefs", "load", fixtures.to_str().unwrap()]);
    assert!(second.contains("0 rows added, 0 updated"), "{second}");
    let out = dir.path().join("export");
    let exported = glint(dir.path(), &["metadefs", "export", out.to_str().unwrap()]);
    assert!(exported.contains(&format!("exported {} namespaces", 3 + catalog::DEFAULTS.len())), "{exported}");
    for (_, fixture) in catalog::read(&fixtures).unwrap() {
        let name = fixture["namespace"].as_str().unwrap().to_owned();
        assert_eq!(read_json(&out.join(format!("{name}.json"))), fixture, "{name}");
    }
    for (file, text) in catalog::DEFAULTS {
        let default: Value = serde_json::from_str(text).unwrap();
        let name = default["namespace"].as_str().unwrap();
        assert_eq!(read_json(&out.join(format!("{name}.json"))), default, "{file}");
    }
}
