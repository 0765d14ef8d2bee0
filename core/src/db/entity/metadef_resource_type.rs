//! The `metadef_resource_types` row.

use sea_orm::entity::prelude::*;

/// A resource type (`OS::Glance::Image`); `protected` marks the ones loaded from definition files.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "metadef_resource_types")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub name: String,
    pub protected: bool,
    pub created_at: DateTime,
    pub updated_at: Option<DateTime>,
}

/// No relations are declared: the repository joins by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
