//! The `metadef_namespaces` row.

use sea_orm::entity::prelude::*;

/// One namespace; `visibility` and `protected` are NULL for definitions loaded from files that leave them out.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "metadef_namespaces")]
#[allow(missing_docs)]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<String>,
    pub protected: Option<bool>,
    pub owner: String,
    pub created_at: DateTime,
    pub updated_at: Option<DateTime>,
}

/// No relations are declared: the repository joins by id.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
