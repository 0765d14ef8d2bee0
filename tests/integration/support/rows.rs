//! Rows written straight into the database, for states a test cannot reach through the API.

use sea_orm::{ConnectionTrait, Statement};

use super::TestApp;

/// Inserts a membership row in any `status` directly: through the members API a row starts
/// `pending` and only the member project may answer it.
pub async fn add_member(app: &TestApp, image_id: &str, member: &str, status: &str) {
    let backend = app.db.get_database_backend();
    app.db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DbBackend::Postgres => "INSERT INTO image_members (image_id, member, can_share, status, created_at, updated_at, deleted) VALUES ($1, $2, false, $3, $4, $4, false)",
                _ => "INSERT INTO image_members (image_id, member, can_share, status, created_at, updated_at, deleted) VALUES (?, ?, false, ?, ?, ?, false)",
            },
            match backend {
                sea_orm::DbBackend::Postgres => vec![image_id.into(), member.into(), status.into(), glint_core::db::now().into()],
                _ => vec![image_id.into(), member.into(), status.into(), glint_core::db::now().into(), glint_core::db::now().into()],
            },
        ))
        .await
        .expect("insert member");
}

/// Sets columns of an image row directly: for states and values the API does not let a client
/// set (`killed`, `saving`, `size`, timestamps), or reaches only through an upload.
pub async fn set_columns(app: &TestApp, image_id: &str, assignments: &str) {
    app.db
        .execute_unprepared(&format!("UPDATE images SET {assignments} WHERE id = '{image_id}'"))
        .await
        .expect("update image row");
}
