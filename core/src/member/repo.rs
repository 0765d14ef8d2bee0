//! Member repository: the `image_members` rows of shared images.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, UpdateMany};

use super::{Member, MemberStatus};
use crate::db::entity::image_member;
use crate::db::now;
use crate::{Error, Result};

fn member(row: image_member::Model) -> Result<Member> {
    Ok(Member {
        status: row.status.parse()?,
        image_id: row.image_id,
        member_id: row.member,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn live(image_id: &str) -> sea_orm::Select<image_member::Entity> {
    image_member::Entity::find()
        .filter(image_member::Column::ImageId.eq(image_id))
        .filter(image_member::Column::Deleted.eq(false))
}

/// The live members of `image_id` (only `only`'s entry when given), oldest first.
pub async fn list(db: &impl ConnectionTrait, image_id: &str, only: Option<&str>) -> Result<Vec<Member>> {
    let mut query = live(image_id);
    if let Some(project) = only {
        query = query.filter(image_member::Column::Member.eq(project));
    }
    query
        .order_by_asc(image_member::Column::CreatedAt)
        .order_by_asc(image_member::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(member)
        .collect()
}

/// Member `member_id` of `image_id`, or 404.
pub async fn get(db: &impl ConnectionTrait, image_id: &str, member_id: &str) -> Result<Member> {
    let row = live(image_id).filter(image_member::Column::Member.eq(member_id)).one(db).await?;
    row.map(member)
        .transpose()?
        .ok_or_else(|| Error::NotFound(format!("Member {member_id} not found for image {image_id}")))
}

/// Offers `image_id` to `member_id` (status `pending`): 409 if it already is, 413 beyond
/// `quota` live members (negative: no limit). A removed member is revived.
pub async fn add(db: &impl ConnectionTrait, image_id: &str, member_id: &str, quota: i64) -> Result<Member> {
    let existing = image_member::Entity::find()
        .filter(image_member::Column::ImageId.eq(image_id))
        .filter(image_member::Column::Member.eq(member_id))
        .one(db)
        .await?;
    if existing.as_ref().is_some_and(|row| !row.deleted) {
        return Err(Error::Conflict(format!("Member {member_id} already associated with image {image_id}")));
    }
    if quota >= 0 && list(db, image_id, None).await?.len() as i64 >= quota {
        return Err(Error::OverLimit(format!("Maximum number of members ({quota}) per image exceeded")));
    }
    let at = now();
    match existing {
        Some(row) => {
            image_member::Entity::update_many()
                .col_expr(image_member::Column::Deleted, Expr::value(false))
                .col_expr(image_member::Column::DeletedAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
                .col_expr(image_member::Column::Status, Expr::value(MemberStatus::Pending.as_str()))
                .col_expr(image_member::Column::CreatedAt, Expr::value(at))
                .col_expr(image_member::Column::UpdatedAt, Expr::value(at))
                .filter(image_member::Column::Id.eq(row.id))
                .filter(image_member::Column::Deleted.eq(true))
                .exec(db)
                .await?;
        }
        None => {
            let row = image_member::ActiveModel {
                image_id: Set(image_id.to_owned()),
                member: Set(member_id.to_owned()),
                can_share: Set(false),
                status: Set(MemberStatus::Pending.as_str().to_owned()),
                created_at: Set(at),
                updated_at: Set(at),
                deleted_at: Set(None),
                deleted: Set(false),
                ..Default::default()
            };
            if let Err(err) = image_member::Entity::insert(row).exec_without_returning(db).await {
                return Err(match err.sql_err() {
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                        Error::Conflict(format!("Member {member_id} already associated with image {image_id}"))
                    }
                    _ => err.into(),
                });
            }
        }
    }
    get(db, image_id, member_id).await
}

/// Records member `member_id`'s answer; 404 if it is not a member.
pub async fn set_status(
    db: &impl ConnectionTrait,
    image_id: &str,
    member_id: &str,
    status: MemberStatus,
) -> Result<Member> {
    update_live(db, image_id, member_id, |update| {
        update
            .col_expr(image_member::Column::Status, Expr::value(status.as_str()))
            .col_expr(image_member::Column::UpdatedAt, Expr::value(now()))
    })
    .await?;
    get(db, image_id, member_id).await
}

/// Removes member `member_id` (soft delete); 404 if it is not a member.
pub async fn remove(db: &impl ConnectionTrait, image_id: &str, member_id: &str) -> Result<()> {
    let at = now();
    update_live(db, image_id, member_id, |update| {
        update
            .col_expr(image_member::Column::Deleted, Expr::value(true))
            .col_expr(image_member::Column::DeletedAt, Expr::value(at))
            .col_expr(image_member::Column::UpdatedAt, Expr::value(at))
    })
    .await
}

/// Applies `set` to the live membership of `member_id` in `image_id`; 404 if there is none.
async fn update_live(
    db: &impl ConnectionTrait,
    image_id: &str,
    member_id: &str,
    set: impl FnOnce(UpdateMany<image_member::Entity>) -> UpdateMany<image_member::Entity>,
) -> Result<()> {
    let result = set(image_member::Entity::update_many())
        .filter(image_member::Column::ImageId.eq(image_id))
        .filter(image_member::Column::Member.eq(member_id))
        .filter(image_member::Column::Deleted.eq(false))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::NotFound(format!("Member {member_id} not found for image {image_id}")));
    }
    Ok(())
}
