//! The `metadef_properties` row.

use sea_orm::entity::prelude::*;

/// A property of a namespace; `json_schema` is the property fragment as JSON text.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "metadef_properties")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub namespace_id: i32,
    pub name: String,
    pub json_schema: String,
    pub created_at: DateTime,
    pub updated_at: Option<DateTime>,
}

/// No relations are declared: the repository joins by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
