//! The `metadef_objects` row.

use sea_orm::entity::prelude::*;

/// An object of a namespace; `required` and `json_schema` are JSON text (names, name → property).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "metadef_objects")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub namespace_id: i32,
    pub name: String,
    pub description: Option<String>,
    pub required: Option<String>,
    pub json_schema: String,
    pub created_at: DateTime,
    pub updated_at: Option<DateTime>,
}

/// No relations are declared: the repository joins by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
