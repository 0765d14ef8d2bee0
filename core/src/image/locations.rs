//! Location repository: where each image's bytes live, and which copies await removal.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::Result;
use crate::db::entity::image_location;
use crate::db::now;

/// A copy of an image's data in one store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Row id.
    pub id: i64,
    /// The image whose data this is.
    pub image_id: String,
    /// The store's URL for the data.
    pub url: String,
    /// Id of the store holding it (`metadata.store`).
    pub store: Option<String>,
    /// The location's metadata as stored (`store` included).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

const ACTIVE: &str = "active";
const PENDING_DELETE: &str = "pending_delete";
const DELETED: &str = "deleted";

impl From<image_location::Model> for Location {
    fn from(row: image_location::Model) -> Self {
        Location {
            store: row.meta_data.get("store").and_then(|s| s.as_str()).map(str::to_owned),
            metadata: match row.meta_data {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            id: row.id,
            image_id: row.image_id,
            url: row.value,
        }
    }
}

/// Records that `image_id`'s data is at `url` in store `store_id`.
pub async fn insert(db: &impl ConnectionTrait, image_id: &str, url: &str, store_id: &str) -> Result<()> {
    let metadata = serde_json::Map::from_iter([("store".to_owned(), serde_json::json!(store_id))]);
    insert_with_metadata(db, image_id, url, metadata).await
}

/// Records that `image_id`'s data is at each `(url, store id)` of `copies`, in one statement.
pub async fn insert_many(db: &impl ConnectionTrait, image_id: &str, copies: &[(&str, &str)]) -> Result<()> {
    if copies.is_empty() {
        return Ok(());
    }
    let at = now();
    let rows = copies.iter().map(|(url, store_id)| image_location::ActiveModel {
        image_id: Set(image_id.to_owned()),
        value: Set((*url).to_owned()),
        meta_data: Set(serde_json::json!({"store": store_id})),
        status: Set(ACTIVE.to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
        deleted: Set(false),
        ..Default::default()
    });
    image_location::Entity::insert_many(rows).exec_without_returning(db).await?;
    Ok(())
}

/// Records that `image_id`'s data is at `url`, with a caller's `metadata` (`store` included).
pub async fn insert_with_metadata(
    db: &impl ConnectionTrait,
    image_id: &str,
    url: &str,
    metadata: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let at = now();
    let row = image_location::ActiveModel {
        image_id: Set(image_id.to_owned()),
        value: Set(url.to_owned()),
        meta_data: Set(serde_json::Value::Object(metadata)),
        status: Set(ACTIVE.to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
        deleted: Set(false),
        ..Default::default()
    };
    image_location::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// Replaces the metadata of location `location_id`.
pub async fn set_metadata(
    db: &impl ConnectionTrait,
    location_id: i64,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    image_location::Entity::update_many()
        .col_expr(image_location::Column::MetaData, Expr::value(serde_json::Value::Object(metadata.clone())))
        .col_expr(image_location::Column::UpdatedAt, Expr::value(now()))
        .filter(image_location::Column::Id.eq(location_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether an image other than `image_id` has `url` as a location whose data is not yet
/// removed (live or awaiting removal).
pub async fn in_use_elsewhere(db: &impl ConnectionTrait, url: &str, image_id: &str) -> Result<bool> {
    let found = image_location::Entity::find()
        .filter(image_location::Column::Value.eq(url))
        .filter(image_location::Column::ImageId.ne(image_id))
        .filter(image_location::Column::Status.is_in([ACTIVE, PENDING_DELETE]))
        .limit(1)
        .all(db)
        .await?;
    Ok(!found.is_empty())
}

/// The live copies of an image's data, oldest first (the order downloads try them in).
pub async fn active(db: &impl ConnectionTrait, image_id: &str) -> Result<Vec<Location>> {
    let rows = image_location::Entity::find()
        .filter(image_location::Column::ImageId.eq(image_id))
        .filter(image_location::Column::Status.eq(ACTIVE))
        .filter(image_location::Column::Deleted.eq(false))
        .order_by_asc(image_location::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Location::from).collect())
}

/// The live copies of several images' data, oldest first (to show where each image is).
pub async fn active_of_images(db: &impl ConnectionTrait, image_ids: &[String]) -> Result<Vec<Location>> {
    let rows = image_location::Entity::find()
        .filter(image_location::Column::ImageId.is_in(image_ids.iter().map(String::as_str)))
        .filter(image_location::Column::Status.eq(ACTIVE))
        .filter(image_location::Column::Deleted.eq(false))
        .order_by_asc(image_location::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Location::from).collect())
}

/// Marks every live copy of `image_id` for removal (the image is being deleted).
pub async fn mark_for_deletion(db: &impl ConnectionTrait, image_id: &str) -> Result<()> {
    image_location::Entity::update_many()
        .col_expr(image_location::Column::Status, Expr::value(PENDING_DELETE))
        .col_expr(image_location::Column::UpdatedAt, Expr::value(now()))
        .filter(image_location::Column::ImageId.eq(image_id))
        .filter(image_location::Column::Status.eq(ACTIVE))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks the live copy `location_id` for removal (one store's copy goes; the image stays).
pub async fn mark_one_for_deletion(db: &impl ConnectionTrait, location_id: i64) -> Result<()> {
    image_location::Entity::update_many()
        .col_expr(image_location::Column::Status, Expr::value(PENDING_DELETE))
        .col_expr(image_location::Column::UpdatedAt, Expr::value(now()))
        .filter(image_location::Column::Id.eq(location_id))
        .filter(image_location::Column::Status.eq(ACTIVE))
        .exec(db)
        .await?;
    Ok(())
}

/// Copies waiting for removal: those of `image_id`, or up to `limit` of any image.
pub async fn pending_deletion(db: &impl ConnectionTrait, image_id: Option<&str>, limit: u64) -> Result<Vec<Location>> {
    let mut query = image_location::Entity::find()
        .filter(image_location::Column::Status.eq(PENDING_DELETE))
        .order_by_asc(image_location::Column::Id)
        .limit(limit);
    if let Some(image_id) = image_id {
        query = query.filter(image_location::Column::ImageId.eq(image_id));
    }
    Ok(query.all(db).await?.into_iter().map(Location::from).collect())
}

/// Records that a copy's bytes are gone.
pub async fn mark_deleted(db: &impl ConnectionTrait, location_id: i64) -> Result<()> {
    let at = now();
    image_location::Entity::update_many()
        .col_expr(image_location::Column::Status, Expr::value(DELETED))
        .col_expr(image_location::Column::Deleted, Expr::value(true))
        .col_expr(image_location::Column::DeletedAt, Expr::value(at))
        .col_expr(image_location::Column::UpdatedAt, Expr::value(at))
        .filter(image_location::Column::Id.eq(location_id))
        .exec(db)
        .await?;
    Ok(())
}
