//! The `metadef_namespace_resource_types` row.

use sea_orm::entity::prelude::*;

/// An association of a namespace with a resource type, unique per pair; `id` keeps their order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "metadef_namespace_resource_types")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub resource_type_id: i32,
    pub namespace_id: i32,
    pub properties_target: Option<String>,
    pub prefix: Option<String>,
    pub created_at: DateTime,
    pub updated_at: Option<DateTime>,
}

/// No relations are declared: the repository joins by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
