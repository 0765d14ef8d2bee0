//! Database migrations: Glance's tables, identical on SQLite, PostgreSQL and MySQL/MariaDB.

pub use sea_orm_migration::prelude::*;

mod builders;
mod m0001_images;
mod m0002_tasks;
mod m0003_task_claims;
mod m0004_metadefs;
mod m0005_image_cache;

/// The ordered list of Glint's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_images::Migration),
            Box::new(m0002_tasks::Migration),
            Box::new(m0003_task_claims::Migration),
            Box::new(m0004_metadefs::Migration),
            Box::new(m0005_image_cache::Migration),
        ]
    }
}
