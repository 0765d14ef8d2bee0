//! The `image_locations` row: where one copy of an image's data lives.

use sea_orm::entity::prelude::*;

/// One location; `status` is `active`, `pending_delete` (the scrubber retries) or `deleted`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "image_locations")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub image_id: String,
    /// The store's URL for the data, e.g. `file:///var/lib/glint/images/<id>`.
    pub value: String,
    /// `{"store": "<store id>"}`.
    pub meta_data: Json,
    pub status: String,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub deleted_at: Option<DateTime>,
    pub deleted: bool,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
