//! The image tables: images, image_properties, image_tags, image_members, image_locations.

use sea_orm_migration::prelude::*;

use crate::builders::{big_id, cascade_fk, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Images {
    Table,
    Id,
    Name,
    DiskFormat,
    ContainerFormat,
    Size,
    VirtualSize,
    Status,
    Visibility,
    Checksum,
    OsHashAlgo,
    OsHashValue,
    MinDisk,
    MinRam,
    Owner,
    Protected,
    OsHidden,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    Deleted,
}

#[derive(DeriveIden, Clone, Copy)]
enum ImageProperties {
    Table,
    Id,
    ImageId,
    Name,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum ImageTags {
    Table,
    Id,
    ImageId,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum ImageMembers {
    Table,
    Id,
    ImageId,
    Member,
    CanShare,
    Status,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    Deleted,
}

#[derive(DeriveIden, Clone, Copy)]
enum ImageLocations {
    Table,
    Id,
    ImageId,
    Value,
    MetaData,
    Status,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    Deleted,
}

fn image_fk<T: IntoIden + Copy + 'static>(table: T, column: T) -> ForeignKeyCreateStatement {
    cascade_fk(table, column, Images::Table, Images::Id)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Images::Table)
                    .col(ColumnDef::new(Images::Id).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(Images::Name).string_len(255).null())
                    .col(ColumnDef::new(Images::DiskFormat).string_len(20).null())
                    .col(ColumnDef::new(Images::ContainerFormat).string_len(20).null())
                    .col(ColumnDef::new(Images::Size).big_integer().null())
                    .col(ColumnDef::new(Images::VirtualSize).big_integer().null())
                    .col(ColumnDef::new(Images::Status).string_len(30).not_null())
                    .col(ColumnDef::new(Images::Visibility).string_len(16).not_null().default("shared"))
                    .col(ColumnDef::new(Images::Checksum).string_len(32).null())
                    .col(ColumnDef::new(Images::OsHashAlgo).string_len(64).null())
                    .col(ColumnDef::new(Images::OsHashValue).string_len(128).null())
                    .col(ColumnDef::new(Images::MinDisk).integer().not_null().default(0))
                    .col(ColumnDef::new(Images::MinRam).integer().not_null().default(0))
                    .col(ColumnDef::new(Images::Owner).string_len(255).null())
                    .col(ColumnDef::new(Images::Protected).boolean().not_null().default(false))
                    .col(ColumnDef::new(Images::OsHidden).boolean().not_null().default(false))
                    .col(ColumnDef::new(Images::CreatedAt).date_time().not_null())
                    .col(ColumnDef::new(Images::UpdatedAt).date_time().not_null())
                    .col(ColumnDef::new(Images::DeletedAt).date_time().null())
                    .col(ColumnDef::new(Images::Deleted).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await?;
        // The list query always filters on deleted and status and orders by created_at, id.
        let image_indexes = [
            ("ix_images_deleted_created", &[Images::Deleted, Images::CreatedAt, Images::Id][..]),
            ("ix_images_owner", &[Images::Owner][..]),
            ("ix_images_visibility", &[Images::Visibility][..]),
            ("ix_images_status", &[Images::Status][..]),
            ("ix_images_name", &[Images::Name][..]),
            ("ix_images_updated_at", &[Images::UpdatedAt][..]),
            ("ix_images_checksum", &[Images::Checksum][..]),
            ("ix_images_os_hash_value", &[Images::OsHashValue][..]),
        ];
        for (name, columns) in image_indexes {
            manager.create_index(index(name, Images::Table, columns)).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ImageProperties::Table)
                    .col(big_id(ImageProperties::Id))
                    .col(ColumnDef::new(ImageProperties::ImageId).string_len(36).not_null())
                    .col(ColumnDef::new(ImageProperties::Name).string_len(255).not_null())
                    .col(ColumnDef::new(ImageProperties::Value).text().null())
                    .foreign_key(&mut image_fk(ImageProperties::Table, ImageProperties::ImageId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "ux_image_properties_image_name",
                ImageProperties::Table,
                &[ImageProperties::ImageId, ImageProperties::Name],
            ))
            .await?;
        manager
            .create_index(index("ix_image_properties_name", ImageProperties::Table, &[ImageProperties::Name]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ImageTags::Table)
                    .col(big_id(ImageTags::Id))
                    .col(ColumnDef::new(ImageTags::ImageId).string_len(36).not_null())
                    .col(ColumnDef::new(ImageTags::Value).string_len(255).not_null())
                    .foreign_key(&mut image_fk(ImageTags::Table, ImageTags::ImageId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "ux_image_tags_image_value",
                ImageTags::Table,
                &[ImageTags::ImageId, ImageTags::Value],
            ))
            .await?;
        manager.create_index(index("ix_image_tags_value", ImageTags::Table, &[ImageTags::Value])).await?;

        manager
            .create_table(
                Table::create()
                    .table(ImageMembers::Table)
                    .col(big_id(ImageMembers::Id))
                    .col(ColumnDef::new(ImageMembers::ImageId).string_len(36).not_null())
                    .col(ColumnDef::new(ImageMembers::Member).string_len(255).not_null())
                    .col(ColumnDef::new(ImageMembers::CanShare).boolean().not_null().default(false))
                    .col(ColumnDef::new(ImageMembers::Status).string_len(20).not_null().default("pending"))
                    .col(ColumnDef::new(ImageMembers::CreatedAt).date_time().not_null())
                    .col(ColumnDef::new(ImageMembers::UpdatedAt).date_time().not_null())
                    .col(ColumnDef::new(ImageMembers::DeletedAt).date_time().null())
                    .col(ColumnDef::new(ImageMembers::Deleted).boolean().not_null().default(false))
                    .foreign_key(&mut image_fk(ImageMembers::Table, ImageMembers::ImageId))
                    .to_owned(),
            )
            .await?;
        // A removed member is revived rather than re-inserted, so one row per (image, member).
        manager
            .create_index(unique_index(
                "ux_image_members_image_member",
                ImageMembers::Table,
                &[ImageMembers::ImageId, ImageMembers::Member],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_image_members_member",
                ImageMembers::Table,
                &[ImageMembers::Member, ImageMembers::Status],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ImageLocations::Table)
                    .col(big_id(ImageLocations::Id))
                    .col(ColumnDef::new(ImageLocations::ImageId).string_len(36).not_null())
                    .col(ColumnDef::new(ImageLocations::Value).text().not_null())
                    .col(ColumnDef::new(ImageLocations::MetaData).json().not_null())
                    .col(ColumnDef::new(ImageLocations::Status).string_len(30).not_null().default("active"))
                    .col(ColumnDef::new(ImageLocations::CreatedAt).date_time().not_null())
                    .col(ColumnDef::new(ImageLocations::UpdatedAt).date_time().not_null())
                    .col(ColumnDef::new(ImageLocations::DeletedAt).date_time().null())
                    .col(ColumnDef::new(ImageLocations::Deleted).boolean().not_null().default(false))
                    .foreign_key(&mut image_fk(ImageLocations::Table, ImageLocations::ImageId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_image_locations_image", ImageLocations::Table, &[ImageLocations::ImageId]))
            .await?;
        Ok(())
    }
}
