//! The `metadef_tags` row.

use sea_orm::entity::prelude::*;

/// A tag of a namespace.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "metadef_tags")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub namespace_id: i32,
    pub name: String,
    pub created_at: DateTime,
    pub updated_at: Option<DateTime>,
}

/// No relations are declared: the repository joins by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
