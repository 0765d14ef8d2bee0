//! Migrations: Glance's tables, created identically on every backend, idempotently.

use sea_orm::{ConnectionTrait, Statement};

use crate::support::{TestApp, on_every_database};

on_every_database!(migrations_create_glances_tables_and_are_idempotent);

async fn migrations_create_glances_tables_and_are_idempotent(app: TestApp) {
    glint_core::db::migrate(&app.db).await.expect("second run is a no-op");
    let backend = app.db.get_database_backend();
    let tables = [
        "images",
        "image_properties",
        "image_tags",
        "image_members",
        "image_locations",
        "tasks",
        "task_info",
        "metadef_namespaces",
        "metadef_objects",
        "metadef_properties",
        "metadef_tags",
        "metadef_resource_types",
        "metadef_namespace_resource_types",
        "node_reference",
        "cached_images",
        "cache_queue",
    ];
    for table in tables {
        let count = app
            .db
            .query_one_raw(Statement::from_string(backend, format!("SELECT COUNT(*) AS n FROM {table}")))
            .await
            .unwrap_or_else(|e| panic!("table {table}: {e}"));
        assert!(count.is_some(), "{table}");
    }
}
