//! The metadata definitions catalog (metadefs): namespaces and what they define for which
//! resource types, in Glance's six tables.
//!
//! Deleting a namespace cascades to its objects, properties, tags and associations in the
//! database, so no delete path can leave orphans behind; resource types are global and only
//! lose their associations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::builders::{cascade_fk, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum MetadefNamespaces {
    Table,
    Id,
    Namespace,
    DisplayName,
    Description,
    Visibility,
    Protected,
    Owner,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MetadefResourceTypes {
    Table,
    Id,
    Name,
    Protected,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MetadefNamespaceResourceTypes {
    Table,
    Id,
    ResourceTypeId,
    NamespaceId,
    PropertiesTarget,
    Prefix,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MetadefObjects {
    Table,
    Id,
    NamespaceId,
    Name,
    Description,
    Required,
    JsonSchema,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MetadefProperties {
    Table,
    Id,
    NamespaceId,
    Name,
    JsonSchema,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MetadefTags {
    Table,
    Id,
    NamespaceId,
    Name,
    CreatedAt,
    UpdatedAt,
}

fn namespace_fk<T: IntoIden + Copy + 'static>(table: T, column: T) -> ForeignKeyCreateStatement {
    cascade_fk(table, column, MetadefNamespaces::Table, MetadefNamespaces::Id)
}

/// A name column (`VARCHAR(80) NOT NULL`) compared exactly: MySQL's and MariaDB's default
/// collations ignore case, SQLite's and PostgreSQL's do not, and a catalog must mean the same
/// thing on every database (`Tag` and `tag` are two tags).
fn name_column<T: IntoIden>(backend: DbBackend, column: T) -> ColumnDef {
    let mut def = ColumnDef::new(column);
    if backend == DbBackend::MySql {
        def.custom(Alias::new("VARCHAR(80) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"));
    } else {
        def.string_len(80);
    }
    def.not_null().to_owned()
}

/// A namespace's child table: id, namespace, name (unique per namespace), the given columns,
/// timestamps.
fn child_table<T: IntoIden + Copy + 'static>(
    backend: DbBackend,
    table: T,
    id: T,
    namespace_id: T,
    name: T,
    columns: Vec<ColumnDef>,
    stamps: (T, T),
) -> TableCreateStatement {
    let mut stmt = Table::create();
    stmt.table(table)
        .col(ColumnDef::new(id).integer().not_null().auto_increment().primary_key())
        .col(ColumnDef::new(namespace_id).integer().not_null())
        .col(name_column(backend, name));
    for column in columns {
        stmt.col(column);
    }
    stmt.col(ColumnDef::new(stamps.0).date_time().not_null())
        .col(ColumnDef::new(stamps.1).date_time().null())
        .foreign_key(&mut namespace_fk(table, namespace_id));
    stmt.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        use MetadefNamespaces as Ns;
        manager
            .create_table(
                Table::create()
                    .table(Ns::Table)
                    .col(ColumnDef::new(Ns::Id).integer().not_null().auto_increment().primary_key())
                    .col(name_column(backend, Ns::Namespace))
                    .col(ColumnDef::new(Ns::DisplayName).string_len(80).null())
                    .col(ColumnDef::new(Ns::Description).text().null())
                    .col(ColumnDef::new(Ns::Visibility).string_len(32).null())
                    .col(ColumnDef::new(Ns::Protected).boolean().null())
                    .col(ColumnDef::new(Ns::Owner).string_len(255).not_null())
                    .col(ColumnDef::new(Ns::CreatedAt).date_time().not_null())
                    .col(ColumnDef::new(Ns::UpdatedAt).date_time().null())
                    .to_owned(),
            )
            .await?;
        manager.create_index(unique_index("uq_metadef_namespaces_namespace", Ns::Table, &[Ns::Namespace])).await?;
        manager.create_index(index("ix_metadef_namespaces_owner", Ns::Table, &[Ns::Owner])).await?;

        use MetadefResourceTypes as Rt;
        manager
            .create_table(
                Table::create()
                    .table(Rt::Table)
                    .col(ColumnDef::new(Rt::Id).integer().not_null().auto_increment().primary_key())
                    .col(name_column(backend, Rt::Name))
                    .col(ColumnDef::new(Rt::Protected).boolean().not_null().default(false))
                    .col(ColumnDef::new(Rt::CreatedAt).date_time().not_null())
                    .col(ColumnDef::new(Rt::UpdatedAt).date_time().null())
                    .to_owned(),
            )
            .await?;
        manager.create_index(unique_index("uq_metadef_resource_types_name", Rt::Table, &[Rt::Name])).await?;

        use MetadefNamespaceResourceTypes as Assoc;
        manager
            .create_table(
                Table::create()
                    .table(Assoc::Table)
                    .col(ColumnDef::new(Assoc::Id).integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Assoc::ResourceTypeId).integer().not_null())
                    .col(ColumnDef::new(Assoc::NamespaceId).integer().not_null())
                    .col(ColumnDef::new(Assoc::PropertiesTarget).string_len(80).null())
                    .col(ColumnDef::new(Assoc::Prefix).string_len(80).null())
                    .col(ColumnDef::new(Assoc::CreatedAt).date_time().not_null())
                    .col(ColumnDef::new(Assoc::UpdatedAt).date_time().null())
                    .foreign_key(&mut namespace_fk(Assoc::Table, Assoc::NamespaceId))
                    .foreign_key(&mut cascade_fk(Assoc::Table, Assoc::ResourceTypeId, Rt::Table, Rt::Id))
                    .to_owned(),
            )
            .await?;
        // Glance's key is (resource_type_id, namespace_id); a surrogate id keeps the order in
        // which associations were made, which lists and exports follow.
        manager
            .create_index(unique_index(
                "uq_metadef_ns_res_types_type_namespace",
                Assoc::Table,
                &[Assoc::ResourceTypeId, Assoc::NamespaceId],
            ))
            .await?;
        manager
            .create_index(index("ix_metadef_ns_res_types_namespace_id", Assoc::Table, &[Assoc::NamespaceId]))
            .await?;

        use MetadefObjects as Obj;
        manager
            .create_table(child_table(
                backend,
                Obj::Table,
                Obj::Id,
                Obj::NamespaceId,
                Obj::Name,
                vec![
                    ColumnDef::new(Obj::Description).text().null().to_owned(),
                    // A JSON array of property names (Glance joins them with commas, which
                    // makes names containing one unrepresentable).
                    ColumnDef::new(Obj::Required).text().null().to_owned(),
                    ColumnDef::new(Obj::JsonSchema).text().not_null().to_owned(),
                ],
                (Obj::CreatedAt, Obj::UpdatedAt),
            ))
            .await?;
        manager
            .create_index(unique_index(
                "uq_metadef_objects_namespace_id_name",
                Obj::Table,
                &[Obj::NamespaceId, Obj::Name],
            ))
            .await?;
        manager.create_index(index("ix_metadef_objects_name", Obj::Table, &[Obj::Name])).await?;

        use MetadefProperties as Prop;
        manager
            .create_table(child_table(
                backend,
                Prop::Table,
                Prop::Id,
                Prop::NamespaceId,
                Prop::Name,
                vec![ColumnDef::new(Prop::JsonSchema).text().not_null().to_owned()],
                (Prop::CreatedAt, Prop::UpdatedAt),
            ))
            .await?;
        manager
            .create_index(unique_index(
                "uq_metadef_properties_namespace_id_name",
                Prop::Table,
                &[Prop::NamespaceId, Prop::Name],
            ))
            .await?;
        manager.create_index(index("ix_metadef_properties_name", Prop::Table, &[Prop::Name])).await?;

        use MetadefTags as Tag;
        manager
            .create_table(child_table(
                backend,
                Tag::Table,
                Tag::Id,
                Tag::NamespaceId,
                Tag::Name,
                vec![],
                (Tag::CreatedAt, Tag::UpdatedAt),
            ))
            .await?;
        manager
            .create_index(unique_index("uq_metadef_tags_namespace_id_name", Tag::Table, &[Tag::NamespaceId, Tag::Name]))
            .await?;
        manager.create_index(index("ix_metadef_tags_name", Tag::Table, &[Tag::Name])).await?;
        Ok(())
    }
}
