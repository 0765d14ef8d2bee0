//! The `node_reference` row.

use sea_orm::entity::prelude::*;

/// One API node that caches image data, named by its URL.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "node_reference")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub node_reference_id: i64,
    pub node_reference_url: String,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
