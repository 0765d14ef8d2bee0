//! The `cached_images` row.

use sea_orm::entity::prelude::*;

/// One image whose data a node holds in its cache; times in microseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cached_images")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub image_id: String,
    pub last_accessed: i64,
    pub last_modified: i64,
    pub size: i64,
    pub hits: i32,
    pub checksum: Option<String>,
    pub node_reference_id: i64,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
