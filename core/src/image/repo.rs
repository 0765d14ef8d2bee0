//! Image repository: the only code that reads and writes images, their properties and tags.

use std::collections::{BTreeMap, HashSet};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query, SimpleExpr, SubQueryStatement};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QuerySelect, Select, SqlErr, TransactionError,
};

use super::{HASH_ALGO, Image, Ingested, Status, Visibility};
use crate::context::RequestContext;
use crate::db::entity::{image, image_location, image_member, image_property, image_tag};
use crate::db::now;
use crate::{Error, Result, policy};

/// Stores a new image with its properties and tags; a duplicate id is a 409.
pub async fn insert(db: &DatabaseConnection, image: &Image) -> Result<()> {
    let row = image::ActiveModel {
        id: Set(image.id.clone()),
        name: Set(image.name.clone()),
        disk_format: Set(image.disk_format.clone()),
        container_format: Set(image.container_format.clone()),
        size: Set(image.size),
        virtual_size: Set(image.virtual_size),
        status: Set(image.status.as_str().to_owned()),
        visibility: Set(image.visibility.as_str().to_owned()),
        checksum: Set(image.checksum.clone()),
        os_hash_algo: Set(image.os_hash_algo.clone()),
        os_hash_value: Set(image.os_hash_value.clone()),
        min_disk: Set(image.min_disk),
        min_ram: Set(image.min_ram),
        owner: Set(image.owner.clone()),
        protected: Set(image.protected),
        os_hidden: Set(image.os_hidden),
        created_at: Set(image.created_at),
        updated_at: Set(image.updated_at),
        deleted_at: Set(None),
        deleted: Set(false),
    };
    db.transaction_async(async |txn| {
        image::Entity::insert(row).exec_without_returning(txn).await.map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                Error::Conflict(format!("Image with identifier {} already exists!", image.id))
            }
            _ => err.into(),
        })?;
        insert_properties(txn, &image.id, image.properties.iter()).await?;
        insert_tags(txn, &image.id, image.tags.iter()).await
    })
    .await?;
    Ok(())
}

async fn insert_properties<'a>(
    txn: &impl ConnectionTrait,
    image_id: &str,
    properties: impl Iterator<Item = (&'a String, &'a Option<String>)>,
) -> Result<()> {
    let rows = properties
        .map(|(name, value)| image_property::ActiveModel {
            image_id: Set(image_id.to_owned()),
            name: Set(name.clone()),
            value: Set(value.clone()),
            ..Default::default()
        })
        .collect();
    insert_all(txn, rows).await
}

async fn insert_tags<'a>(
    txn: &impl ConnectionTrait,
    image_id: &str,
    tags: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let rows = tags
        .map(|tag| image_tag::ActiveModel {
            image_id: Set(image_id.to_owned()),
            value: Set(tag.clone()),
            ..Default::default()
        })
        .collect();
    insert_all(txn, rows).await
}

/// Inserts `rows` in one statement (none is no statement: an empty INSERT is an error).
async fn insert_all<A>(txn: &impl ConnectionTrait, rows: Vec<A>) -> Result<()>
where
    A: ActiveModelTrait + Send,
{
    if !rows.is_empty() {
        A::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// The live (non-deleted) image `id`, whoever owns it.
pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Image>> {
    Ok(read(db, by_id(id), None).await?.pop().map(|(image, _)| image))
}

/// The image `id` as the caller sees it: 404 when missing, deleted or invisible to the caller.
pub async fn find_visible(db: &impl ConnectionTrait, ctx: &RequestContext, id: &str) -> Result<Image> {
    let not_found = || Error::NotFound(format!("No image found with ID {id}"));
    let (image, member) = get_as_seen_by(db, ctx, id).await?.ok_or_else(not_found)?;
    // Only a shared image's memberships grant anything; an admin needs none.
    let member = member && image.visibility == Visibility::Shared && !ctx.is_admin;
    if policy::can_see(ctx, &image, member) { Ok(image) } else { Err(not_found()) }
}

/// The live image `id` and whether the caller's project holds a membership of it (any status).
pub(super) async fn get_as_seen_by(
    db: &impl ConnectionTrait,
    ctx: &RequestContext,
    id: &str,
) -> Result<Option<(Image, bool)>> {
    Ok(read(db, by_id(id), ctx.project_id.as_deref()).await?.pop())
}

fn by_id(id: &str) -> Select<image::Entity> {
    image::Entity::find_by_id(id.to_owned()).filter(image::Column::Deleted.eq(false))
}

/// Persists the metadata changes from `before` to `after` in one transaction and returns the
/// saved image. Status is compare-and-set: a concurrent status change makes this a 409.
pub async fn update(db: &DatabaseConnection, before: &Image, after: &Image) -> Result<Image> {
    let updated_at = now();
    db.transaction_async(async |txn| {
        let result = image::Entity::update_many()
            .col_expr(image::Column::Name, Expr::value(after.name.clone()))
            .col_expr(image::Column::Visibility, Expr::value(after.visibility.as_str()))
            .col_expr(image::Column::Protected, Expr::value(after.protected))
            .col_expr(image::Column::OsHidden, Expr::value(after.os_hidden))
            .col_expr(image::Column::MinRam, Expr::value(after.min_ram))
            .col_expr(image::Column::MinDisk, Expr::value(after.min_disk))
            .col_expr(image::Column::DiskFormat, Expr::value(after.disk_format.clone()))
            .col_expr(image::Column::ContainerFormat, Expr::value(after.container_format.clone()))
            .col_expr(image::Column::Owner, Expr::value(after.owner.clone()))
            // Read-only for clients: only a location change (the first one activating a
            // queued image) moves these.
            .col_expr(image::Column::Status, Expr::value(after.status.as_str()))
            .col_expr(image::Column::Size, Expr::value(after.size))
            .col_expr(image::Column::Checksum, Expr::value(after.checksum.clone()))
            .col_expr(image::Column::OsHashAlgo, Expr::value(after.os_hash_algo.clone()))
            .col_expr(image::Column::OsHashValue, Expr::value(after.os_hash_value.clone()))
            .col_expr(image::Column::UpdatedAt, Expr::value(updated_at))
            .filter(image::Column::Id.eq(&before.id))
            .filter(image::Column::Deleted.eq(false))
            .filter(image::Column::Status.eq(before.status.as_str()))
            .exec(txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(lost_race(txn, &before.id).await);
        }

        let changed: Vec<&String> = before
            .properties
            .keys()
            .filter(|k| after.properties.get(*k) != before.properties.get(*k))
            .chain(after.properties.keys().filter(|k| !before.properties.contains_key(*k)))
            .collect();
        if !changed.is_empty() {
            image_property::Entity::delete_many()
                .filter(image_property::Column::ImageId.eq(&before.id))
                .filter(image_property::Column::Name.is_in(changed.iter().map(|k| k.as_str())))
                .exec(txn)
                .await?;
            insert_properties(txn, &before.id, after.properties.iter().filter(|(k, _)| changed.contains(k))).await?;
        }
        let removed_tags: Vec<&String> = before.tags.difference(&after.tags).collect();
        if !removed_tags.is_empty() {
            image_tag::Entity::delete_many()
                .filter(image_tag::Column::ImageId.eq(&before.id))
                .filter(image_tag::Column::Value.is_in(removed_tags.iter().map(|t| t.as_str())))
                .exec(txn)
                .await?;
        }
        insert_tags(txn, &before.id, after.tags.difference(&before.tags)).await?;
        save_locations(txn, before, after).await
    })
    .await?;

    let mut saved = after.clone();
    saved.updated_at = updated_at;
    saved.locations = super::locations::active(db, &before.id).await?;
    saved.stores = saved.locations.iter().filter_map(|l| l.store.clone()).collect();
    Ok(saved)
}

/// The location rows a patch changed: kept ones (same id) may have new metadata, new ones
/// (id 0) are inserted, and those gone are marked for removal of their data.
async fn save_locations(txn: &impl ConnectionTrait, before: &Image, after: &Image) -> Result<()> {
    for old in &before.locations {
        match after.locations.iter().find(|l| l.id == old.id) {
            None => super::locations::mark_one_for_deletion(txn, old.id).await?,
            Some(kept) if kept.metadata != old.metadata => {
                super::locations::set_metadata(txn, old.id, &kept.metadata).await?;
            }
            Some(_) => {}
        }
    }
    for new in after.locations.iter().filter(|l| l.id == 0) {
        super::locations::insert_with_metadata(txn, &before.id, &new.url, new.metadata.clone()).await?;
    }
    Ok(())
}

/// Moves image `id` from status `from` to `to` if nobody moved it first (409 otherwise).
pub async fn set_status(db: &impl ConnectionTrait, id: &str, from: Status, to: Status) -> Result<()> {
    let result = image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value(to.as_str()))
        .col_expr(image::Column::UpdatedAt, Expr::value(now()))
        .filter(image::Column::Id.eq(id))
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(lost_race(db, id).await);
    }
    Ok(())
}

/// Sets (`Some`) or removes (`None`) extra properties of image `id`; part of the caller's
/// transaction. For the properties Glance maintains itself (`os_glance_*`). Those set are
/// written in one upsert on the unique (image, name) index, those removed in one delete.
pub async fn set_properties(db: &impl ConnectionTrait, id: &str, changes: &[(&str, Option<&str>)]) -> Result<()> {
    let removed: Vec<&str> = changes.iter().filter(|(_, value)| value.is_none()).map(|(name, _)| *name).collect();
    if !removed.is_empty() {
        image_property::Entity::delete_many()
            .filter(image_property::Column::ImageId.eq(id))
            .filter(image_property::Column::Name.is_in(removed))
            .exec(db)
            .await?;
    }
    let set: Vec<image_property::ActiveModel> = changes
        .iter()
        .filter_map(|(name, value)| {
            value.map(|value| image_property::ActiveModel {
                image_id: Set(id.to_owned()),
                name: Set((*name).to_owned()),
                value: Set(Some(value.to_owned())),
                ..Default::default()
            })
        })
        .collect();
    if !set.is_empty() {
        let on_conflict = OnConflict::columns([image_property::Column::ImageId, image_property::Column::Name])
            .update_column(image_property::Column::Value)
            .to_owned();
        image_property::Entity::insert_many(set).on_conflict(on_conflict).exec_without_returning(db).await?;
    }
    Ok(())
}

/// Adds property `name = value` to image `id` only if the image does not have it yet: the
/// unique (image, name) index makes this a lock. `false` when someone else holds it.
pub async fn add_property_if_absent(
    db: &sea_orm::DatabaseTransaction,
    id: &str,
    name: &str,
    value: &str,
) -> Result<bool> {
    let row = image_property::ActiveModel {
        image_id: Set(id.to_owned()),
        name: Set(name.to_owned()),
        value: Set(Some(value.to_owned())),
        ..Default::default()
    };
    // In a savepoint: on PostgreSQL a failed statement would otherwise doom the caller's
    // whole transaction.
    let inserted = db.transaction_async(async |savepoint| {
        image_property::Entity::insert(row).exec_without_returning(savepoint).await
    });
    match inserted.await {
        Ok(_) => Ok(true),
        Err(TransactionError::Transaction(err))
            if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
        {
            Ok(false)
        }
        Err(TransactionError::Transaction(err) | TransactionError::Connection(err)) => Err(err.into()),
    }
}

/// Removes property `name` of image `id` if it still has `value`; `false` if it did not.
pub async fn remove_property_if(db: &impl ConnectionTrait, id: &str, name: &str, value: &str) -> Result<bool> {
    let result = image_property::Entity::delete_many()
        .filter(image_property::Column::ImageId.eq(id))
        .filter(image_property::Column::Name.eq(name))
        .filter(image_property::Column::Value.eq(value))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Soft-deletes image `id` (status `deleted`) and marks its data for removal in the same
/// transaction; afterwards it is a 404 for everyone, whether or not the bytes are gone yet.
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<()> {
    let at = now();
    db.transaction_async(async |txn| {
        let result = image::Entity::update_many()
            .col_expr(image::Column::Status, Expr::value(Status::Deleted.as_str()))
            .col_expr(image::Column::Deleted, Expr::value(true))
            .col_expr(image::Column::DeletedAt, Expr::value(at))
            .col_expr(image::Column::UpdatedAt, Expr::value(at))
            .filter(image::Column::Id.eq(id))
            .filter(image::Column::Deleted.eq(false))
            .filter(image::Column::Protected.eq(false))
            .exec(txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(match get(txn, id).await? {
                Some(image) if image.protected => {
                    Error::Forbidden(format!("Image {id} is protected and cannot be deleted."))
                }
                _ => Error::NotFound(format!("No image found with ID {id}")),
            });
        }
        super::locations::mark_for_deletion(txn, id).await
    })
    .await?;
    Ok(())
}

/// Marks the copy of active image `id` in store `store_id` for removal, in one transaction
/// with Glance's refusals: 409 unless the image is active, 403 for its only copy, 404 when the
/// store holds none. The image's row is written first, which serializes concurrent removals
/// of one image, so two of them cannot take away its last two copies.
pub async fn remove_store_copy(db: &DatabaseConnection, id: &str, store_id: &str) -> Result<()> {
    db.transaction_async(async |txn| {
        let touched = image::Entity::update_many()
            .col_expr(image::Column::UpdatedAt, Expr::value(now()))
            .filter(image::Column::Id.eq(id))
            .filter(image::Column::Deleted.eq(false))
            .filter(image::Column::Status.eq(Status::Active.as_str()))
            .exec(txn)
            .await?;
        if touched.rows_affected == 0 {
            return Err(match get(txn, id).await? {
                Some(_) => Error::Conflict(
                    "It's not allowed to remove image data from store if image status is not 'active'".into(),
                ),
                None => Error::NotFound(format!("No image found with ID {id}")),
            });
        }
        let copies = super::locations::active(txn, id).await?;
        if copies.len() == 1 {
            return Err(Error::Forbidden(
                "Cannot delete image data from the only store containing it. Consider deleting the image instead."
                    .into(),
            ));
        }
        let Some(copy) = copies.iter().find(|c| c.store.as_deref() == Some(store_id)) else {
            return Err(Error::NotFound(format!("Image {id} is not stored in store {store_id}.")));
        };
        super::locations::mark_one_for_deletion(txn, copy.id).await
    })
    .await?;
    Ok(())
}

/// Records a finished upload in one transaction: the image becomes `active` with its size,
/// hashes and virtual size, and gains the location. A 410 if the image was deleted (or moved
/// on) meanwhile; the caller then removes the stored bytes.
pub async fn finish_upload(
    db: &DatabaseConnection,
    id: &str,
    data: &Ingested,
    virtual_size: Option<i64>,
    store_id: &str,
) -> Result<()> {
    let size = i64::try_from(data.size).map_err(|_| Error::OverLimit("image too large".into()))?;
    db.transaction_async(async |txn| {
        let result = image::Entity::update_many()
            .col_expr(image::Column::Status, Expr::value(Status::Active.as_str()))
            .col_expr(image::Column::Size, Expr::value(size))
            .col_expr(image::Column::VirtualSize, Expr::value(virtual_size))
            .col_expr(image::Column::Checksum, Expr::value(data.checksum.clone()))
            .col_expr(image::Column::OsHashAlgo, Expr::value(HASH_ALGO))
            .col_expr(image::Column::OsHashValue, Expr::value(data.os_hash_value.clone()))
            .col_expr(image::Column::UpdatedAt, Expr::value(now()))
            .filter(image::Column::Id.eq(id))
            .filter(image::Column::Deleted.eq(false))
            .filter(image::Column::Status.eq(Status::Saving.as_str()))
            .exec(txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(Error::Gone(format!(
                "Image {id} could not be found after upload. The image may have been deleted during the upload."
            )));
        }
        super::locations::insert(txn, id, &data.location, store_id).await
    })
    .await?;
    Ok(())
}

/// What an import learned about the data it stored.
pub struct Imported<'a> {
    /// Size and digests of the stored data.
    pub data: &'a Ingested,
    /// From format inspection, when it ran.
    pub virtual_size: Option<i64>,
    /// The new `disk_format`: the converted data's, or the remote image's (glance-download).
    pub disk_format: Option<&'a str>,
    /// The new `container_format` (`bare` after a conversion, or the remote image's).
    pub container_format: Option<&'a str>,
}

/// Records a finished import on image `id`, part of the caller's transaction: `importing ->
/// active` with the data's size, digests and virtual size (and new formats). `false` if
/// the image is no longer `importing` (deleted meanwhile).
pub async fn activate_import(db: &impl ConnectionTrait, id: &str, imported: &Imported<'_>) -> Result<bool> {
    let size = i64::try_from(imported.data.size).map_err(|_| Error::OverLimit("image too large".into()))?;
    let mut update = image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value(Status::Active.as_str()))
        .col_expr(image::Column::Size, Expr::value(size))
        .col_expr(image::Column::VirtualSize, Expr::value(imported.virtual_size))
        .col_expr(image::Column::Checksum, Expr::value(imported.data.checksum.clone()))
        .col_expr(image::Column::OsHashAlgo, Expr::value(HASH_ALGO))
        .col_expr(image::Column::OsHashValue, Expr::value(imported.data.os_hash_value.clone()))
        .col_expr(image::Column::UpdatedAt, Expr::value(now()));
    if let Some(disk_format) = imported.disk_format {
        update = update.col_expr(image::Column::DiskFormat, Expr::value(disk_format));
    }
    if let Some(container_format) = imported.container_format {
        update = update.col_expr(image::Column::ContainerFormat, Expr::value(container_format));
    }
    let result = update
        .filter(image::Column::Id.eq(id))
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::Status.eq(Status::Importing.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Heartbeat of a running upload or staging: a `saving` image whose `updated_at` stops
/// moving was abandoned by a process that died (see [`reset_stale_uploads`]).
pub async fn touch_upload(db: &DatabaseConnection, id: &str) -> Result<()> {
    image::Entity::update_many()
        .col_expr(image::Column::UpdatedAt, Expr::value(now()))
        .filter(image::Column::Id.eq(id))
        .filter(image::Column::Status.is_in([Status::Saving.as_str(), Status::Uploading.as_str()]))
        .exec(db)
        .await?;
    Ok(())
}

/// Puts back to `queued` every `saving` image whose upload has shown no sign of life for
/// `idle`; returns how many.
pub async fn reset_stale_uploads(db: &DatabaseConnection, idle: std::time::Duration) -> Result<u64> {
    let idle = chrono::Duration::from_std(idle).map_err(|e| Error::Internal(e.to_string()))?;
    let result = image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value(Status::Queued.as_str()))
        .col_expr(image::Column::Size, Expr::value(Option::<i64>::None))
        .col_expr(image::Column::VirtualSize, Expr::value(Option::<i64>::None))
        .col_expr(image::Column::UpdatedAt, Expr::value(now()))
        .filter(image::Column::Status.eq(Status::Saving.as_str()))
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::UpdatedAt.lt(now() - idle))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Ids of live images in `status` whose `updated_at` is older than `idle`.
pub async fn stale_in_status(
    db: &DatabaseConnection,
    status: Status,
    idle: std::time::Duration,
) -> Result<Vec<String>> {
    let idle = chrono::Duration::from_std(idle).map_err(|e| Error::Internal(e.to_string()))?;
    let rows = image::Entity::find()
        .filter(image::Column::Status.eq(status.as_str()))
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::UpdatedAt.lt(now() - idle))
        .limit(500)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Which of `ids` are live images that still need their staged data: `uploading` (staged,
/// waiting for its import) or `importing`.
pub async fn using_staged_data(db: &DatabaseConnection, ids: &[String]) -> Result<HashSet<String>> {
    let mut using = HashSet::new();
    // In batches: databases bound the parameters of one statement.
    for batch in ids.chunks(500) {
        let rows: Vec<String> = image::Entity::find()
            .select_only()
            .column(image::Column::Id)
            .filter(image::Column::Id.is_in(batch.iter().cloned()))
            .filter(image::Column::Deleted.eq(false))
            .filter(image::Column::Status.is_in([Status::Uploading.as_str(), Status::Importing.as_str()]))
            .into_tuple()
            .all(db)
            .await?;
        using.extend(rows);
    }
    Ok(using)
}

/// Puts an image whose upload, staging or import failed back to `queued` (if it is still in
/// status `from`), as Glance does, clearing its sizes.
pub async fn back_to_queued(db: &impl ConnectionTrait, id: &str, from: Status) -> Result<()> {
    image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value(Status::Queued.as_str()))
        .col_expr(image::Column::Size, Expr::value(Option::<i64>::None))
        .col_expr(image::Column::VirtualSize, Expr::value(Option::<i64>::None))
        .col_expr(image::Column::UpdatedAt, Expr::value(now()))
        .filter(image::Column::Id.eq(id))
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Records the size of data staged for `uploading` image `id`; a 410 if it moved on meanwhile.
pub async fn finish_stage(db: &DatabaseConnection, id: &str, size: u64) -> Result<()> {
    let size = i64::try_from(size).map_err(|_| Error::OverLimit("image too large".into()))?;
    let result = image::Entity::update_many()
        .col_expr(image::Column::Size, Expr::value(size))
        .col_expr(image::Column::UpdatedAt, Expr::value(now()))
        .filter(image::Column::Id.eq(id))
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::Status.eq(Status::Uploading.as_str()))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::Gone(format!(
            "Image {id} could not be found after staging. The image may have been deleted meanwhile."
        )));
    }
    Ok(())
}

async fn lost_race(db: &impl ConnectionTrait, id: &str) -> Error {
    match get(db, id).await {
        Ok(Some(image)) => {
            Error::Conflict(format!("Image {id} changed status to {} while the request was processed", image.status))
        }
        Ok(None) => Error::NotFound(format!("No image found with ID {id}")),
        Err(err) => err,
    }
}

/// The images `select` finds, each with its properties, tags and active locations, and whether
/// `member_of` holds a membership of it, in one statement: the child rows come back as JSON
/// arrays from correlated subqueries, so a read costs one round trip however many images.
pub(super) async fn read(
    db: &impl ConnectionTrait,
    select: Select<image::Entity>,
    member_of: Option<&str>,
) -> Result<Vec<(Image, bool)>> {
    let backend = db.get_database_backend();
    let aggregate = |elements: &str, from: &str| -> SimpleExpr {
        Expr::cust(match backend {
            DbBackend::Postgres => {
                format!("(SELECT COALESCE(json_agg(json_build_array({elements})), '[]')::text FROM {from})")
            }
            DbBackend::MySql => {
                format!("(SELECT CAST(COALESCE(JSON_ARRAYAGG(JSON_ARRAY({elements})), '[]') AS CHAR) FROM {from})")
            }
            _ => format!("(SELECT json_group_array(json_array({elements})) FROM {from})"),
        })
    };
    let mut membership = Query::select();
    membership
        .expr(Expr::cust("COUNT(*)"))
        .from(image_member::Entity)
        .and_where(
            Expr::col((image_member::Entity, image_member::Column::ImageId)).equals((image::Entity, image::Column::Id)),
        )
        .and_where(Expr::col((image_member::Entity, image_member::Column::Member)).eq(member_of.unwrap_or_default()))
        .and_where(Expr::col((image_member::Entity, image_member::Column::Deleted)).eq(false))
        .and_where(Expr::value(member_of.is_some()).eq(true));
    let membership = SimpleExpr::SubQuery(None, Box::new(SubQueryStatement::SelectStatement(membership)));
    let rows = select
        .column_as(aggregate("p.name, p.value", "image_properties p WHERE p.image_id = images.id"), "glint_properties")
        .column_as(aggregate("t.value", "image_tags t WHERE t.image_id = images.id"), "glint_tags")
        .column_as(
            aggregate(
                "l.id, l.value, l.meta_data",
                "image_locations l WHERE l.image_id = images.id AND l.status = 'active' AND l.deleted = false",
            ),
            "glint_locations",
        )
        .column_as(membership, "glint_member")
        .into_model::<FullRow>()
        .all(db)
        .await?;
    rows.into_iter().map(FullRow::assemble).collect()
}

/// An `images` row with the child-row columns `read` adds.
struct FullRow {
    row: image::Model,
    properties: String,
    tags: String,
    locations: String,
    member: i64,
}

impl sea_orm::FromQueryResult for FullRow {
    fn from_query_result(res: &sea_orm::QueryResult, pre: &str) -> std::result::Result<Self, DbErr> {
        Ok(FullRow {
            row: image::Model::from_query_result(res, pre)?,
            properties: res.try_get(pre, "glint_properties")?,
            tags: res.try_get(pre, "glint_tags")?,
            locations: res.try_get(pre, "glint_locations")?,
            member: res.try_get(pre, "glint_member")?,
        })
    }
}

impl FullRow {
    fn assemble(self) -> Result<(Image, bool)> {
        let row = self.row;
        let corrupt = |what: &str, value: &str| {
            Error::Database(DbErr::Custom(format!("image {}: stored {what} '{value}' is unknown", row.id)))
        };
        let children = |what: &str, json: &str| -> Result<Vec<Vec<serde_json::Value>>> {
            serde_json::from_str(json).map_err(|_| corrupt(what, json))
        };
        let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let mut properties = BTreeMap::new();
        for property in children("properties", &self.properties)? {
            if let [name, value] = property.as_slice() {
                properties.insert(text(name).ok_or_else(|| corrupt("property", &self.properties))?, text(value));
            }
        }
        let tags = children("tags", &self.tags)?.iter().filter_map(|tag| tag.first().and_then(text)).collect();
        let mut locations = Vec::new();
        for location in children("locations", &self.locations)? {
            let [id, url, metadata] = location.as_slice() else { continue };
            // SQLite and MariaDB nest the stored JSON as a string, PostgreSQL as a value.
            let metadata = match metadata {
                serde_json::Value::String(stored) => serde_json::from_str(stored).unwrap_or_default(),
                other => other.clone(),
            };
            locations.push(super::locations::Location::from(image_location::Model {
                id: id.as_i64().ok_or_else(|| corrupt("location", &self.locations))?,
                image_id: row.id.clone(),
                value: text(url).ok_or_else(|| corrupt("location", &self.locations))?,
                meta_data: metadata,
                status: String::new(),
                created_at: row.created_at,
                updated_at: row.updated_at,
                deleted_at: None,
                deleted: false,
            }));
        }
        locations.sort_by_key(|location| location.id);
        let stores = locations.iter().filter_map(|location| location.store.clone()).collect();
        let image = Image {
            status: row.status.parse().map_err(|_| corrupt("status", &row.status))?,
            visibility: row.visibility.parse().map_err(|_| corrupt("visibility", &row.visibility))?,
            properties,
            tags,
            stores,
            locations,
            id: row.id,
            name: row.name,
            disk_format: row.disk_format,
            container_format: row.container_format,
            size: row.size,
            virtual_size: row.virtual_size,
            checksum: row.checksum,
            os_hash_algo: row.os_hash_algo,
            os_hash_value: row.os_hash_value,
            min_disk: row.min_disk,
            min_ram: row.min_ram,
            owner: row.owner,
            protected: row.protected,
            os_hidden: row.os_hidden,
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        Ok((image, self.member > 0))
    }
}

/// What a `location_import` task found out about the data behind the location.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Located {
    /// Bytes at the location.
    pub size: i64,
    /// md5, when hashed.
    pub checksum: Option<String>,
    /// `os_hash_algo` and `os_hash_value`, when hashed or given.
    pub hash: Option<(String, String)>,
}

/// Makes image `id` active from `importing` with the data found at its new location; false
/// when the image is no longer `importing` (nothing written).
pub async fn activate_located(db: &impl ConnectionTrait, id: &str, located: &Located) -> Result<bool> {
    let (algo, value) = located.hash.clone().unzip();
    let result = image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value(Status::Active.as_str()))
        .col_expr(image::Column::Size, Expr::value(located.size))
        .col_expr(image::Column::Checksum, Expr::value(located.checksum.clone()))
        .col_expr(image::Column::OsHashAlgo, Expr::value(algo))
        .col_expr(image::Column::OsHashValue, Expr::value(value))
        .col_expr(image::Column::UpdatedAt, Expr::value(now()))
        .filter(image::Column::Id.eq(id))
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::Status.eq(Status::Importing.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
