//! Task repository: the `tasks` and `task_info` rows, and their lazy expiry.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionSession, TransactionTrait,
};

use super::{Task, TaskStatus};
use crate::context::RequestContext;
use crate::db::entity::{task, task_info};
use crate::db::now;
use crate::image::import::CALLER;
use crate::{Error, Result};

/// Records a new task with its info, both or neither (a savepoint inside the caller's
/// transaction): the outbox relay publishes any pending task row at once, and a worker that
/// claimed a task without its info would abort it for want of an input.
pub async fn insert(db: &impl TransactionTrait, task: &Task) -> Result<()> {
    let row = task::ActiveModel {
        id: Set(task.id.clone()),
        task_type: Set(task.task_type.as_str().to_owned()),
        status: Set(task.status.as_str().to_owned()),
        owner: Set(task.owner.clone()),
        expires_at: Set(task.expires_at),
        image_id: Set(task.image_id.clone()),
        request_id: Set(task.request_id.clone()),
        user_id: Set(task.user_id.clone()),
        created_at: Set(task.created_at),
        updated_at: Set(task.updated_at),
        deleted_at: Set(None),
        deleted: Set(false),
        claimed_by: Set(None),
        lease_expires_at: Set(None),
        published_at: Set(None),
        attempts: Set(0),
    };
    let info = task_info::ActiveModel {
        task_id: Set(task.id.clone()),
        input: Set(task.input.clone()),
        result: Set(task.result.clone()),
        message: Set(task.message.clone()),
    };
    db.transaction::<_, _, Error>(|txn| {
        Box::pin(async move {
            task::Entity::insert(row).exec_without_returning(txn).await?;
            task_info::Entity::insert(info).exec_without_returning(txn).await?;
            Ok(())
        })
    })
    .await?;
    Ok(())
}

fn duration(d: std::time::Duration) -> Result<chrono::Duration> {
    chrono::Duration::from_std(d).map_err(|e| Error::Internal(format!("duration out of range: {e}")))
}

/// Claims pending task `id` for `worker` until `lease` from now (pending -> processing, by a
/// conditional update). `None` when someone else holds it or it is already finished: the
/// caller drops the duplicate wake-up.
pub async fn claim<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: &str,
    worker: &str,
    lease: std::time::Duration,
) -> Result<Option<Task>> {
    Ok(claim_counted(db, id, worker, lease).await?.map(|(task, _)| task))
}

/// [`claim`], and how many times the task has been claimed now (this claim included), read
/// from the same row rather than asked for again. The claim's commit waits for the disk: a
/// claim lost in a crash of the database server would let a second worker run the task.
pub async fn claim_counted(
    db: &impl ConnectionTrait,
    id: &str,
    worker: &str,
    lease: std::time::Duration,
) -> Result<Option<(Task, i32)>> {
    claim_on(db, id, worker, lease).await
}

/// Begins a PostgreSQL transaction whose commit does not wait for its WAL to reach the disk
/// (`synchronous_commit = off` for it alone): for a write that a crash of the database server
/// may undo because it is redone anyway.
async fn begin_unflushed<T: TransactionTrait>(db: &T) -> Result<T::Transaction> {
    let txn = db.begin().await?;
    txn.execute_unprepared("SET LOCAL synchronous_commit = off").await?;
    Ok(txn)
}

async fn claim_on(
    db: &impl ConnectionTrait,
    id: &str,
    worker: &str,
    lease: std::time::Duration,
) -> Result<Option<(Task, i32)>> {
    let at = now();
    let result = task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(TaskStatus::Processing.as_str()))
        .col_expr(task::Column::ClaimedBy, Expr::value(worker))
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(at + duration(lease)?))
        .col_expr(task::Column::Attempts, Expr::col(task::Column::Attempts).add(1))
        .col_expr(task::Column::UpdatedAt, Expr::value(at))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Pending.as_str()))
        .filter(task::Column::Deleted.eq(false))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    let Some(row) = task::Entity::find_by_id(id.to_owned()).one(db).await? else { return Ok(None) };
    let attempts = row.attempts;
    Ok(assemble(db, vec![row]).await?.pop().map(|task| (task, attempts)))
}

/// Extends `worker`'s claim on `id`; `false` when the claim was lost (lease expired and the
/// task was released or taken): the worker must stop.
pub async fn renew_lease(
    db: &impl ConnectionTrait,
    id: &str,
    worker: &str,
    lease: std::time::Duration,
) -> Result<bool> {
    let result = task::Entity::update_many()
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(now() + duration(lease)?))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::ClaimedBy.eq(worker))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A worker's hold on a running task: what ending the task needs.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    /// The claimed task.
    pub task_id: &'a str,
    /// The worker holding it (the task's `claimed_by`).
    pub worker: &'a str,
    /// How long the task is kept once it has ended.
    pub ttl: std::time::Duration,
    /// The task's input as the worker claimed it, if it has it: ending the task then drops the
    /// caller's credentials from it without reading it again (nothing else changes an input).
    pub input: Option<&'a serde_json::Value>,
}

/// Ends the claimed task as `success` with `result`; `false` when the claim
/// was lost (nothing written).
pub async fn succeed<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    claim: &Claim<'_>,
    result: serde_json::Value,
) -> Result<bool> {
    finish(db, claim, TaskStatus::Success, Some(result), "").await
}

/// [`succeed`] as part of the caller's transaction `txn`, without a savepoint of its own.
pub async fn succeed_in(txn: &DatabaseTransaction, claim: &Claim<'_>, result: serde_json::Value) -> Result<bool> {
    finish_in(txn, claim, TaskStatus::Success, Some(result), "").await
}

/// Ends the claimed task as `failure` with `reason` as its message; `false`
/// when the claim was lost (nothing written).
pub async fn fail<C: ConnectionTrait + TransactionTrait>(db: &C, claim: &Claim<'_>, reason: &str) -> Result<bool> {
    finish(db, claim, TaskStatus::Failure, None, reason).await
}

/// [`fail`] as part of the caller's transaction `txn`, without a savepoint of its own.
pub async fn fail_in(txn: &DatabaseTransaction, claim: &Claim<'_>, reason: &str) -> Result<bool> {
    finish_in(txn, claim, TaskStatus::Failure, None, reason).await
}

/// Ends the claimed task as `status` with its result and message, in one transaction (a
/// savepoint inside the caller's), so nobody sees the final status without its message.
async fn finish<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    claim: &Claim<'_>,
    status: TaskStatus,
    result: Option<serde_json::Value>,
    message: &str,
) -> Result<bool> {
    // Owned: the transaction's closure may not borrow from the caller.
    let (id, worker, input, message) =
        (claim.task_id.to_owned(), claim.worker.to_owned(), claim.input.cloned(), message.to_owned());
    let ttl = claim.ttl;
    let finished = db.transaction::<_, _, Error>(|txn| {
        Box::pin(async move {
            let claim = Claim { task_id: &id, worker: &worker, ttl, input: input.as_ref() };
            finish_in(txn, &claim, status, result, &message).await
        })
    });
    Ok(finished.await?)
}

/// The statements of [`finish`] on `db`, which the caller makes atomic: the task row, then its
/// `task_info` (result, message, and the input without the caller's token). It expires
/// `claim.ttl` later. `false` when the worker no longer held the claim (nothing written).
async fn finish_in(
    db: &impl ConnectionTrait,
    claim: &Claim<'_>,
    status: TaskStatus,
    result: Option<serde_json::Value>,
    message: &str,
) -> Result<bool> {
    TaskStatus::Processing.next(status)?;
    let at = now();
    let expires_at = at + duration(claim.ttl)?;
    let updated = task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(status.as_str()))
        .col_expr(task::Column::ExpiresAt, Expr::value(expires_at))
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::UpdatedAt, Expr::value(at))
        .filter(task::Column::Id.eq(claim.task_id))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::ClaimedBy.eq(claim.worker))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        // Nothing written: committing ends the transaction (and its locks) as a rollback would.
        return Ok(false);
    }
    let input = match claim.input {
        Some(input) => without_caller(input.clone()),
        None => stored_input_without_caller(db, claim.task_id).await?,
    };
    let mut update = task_info::Entity::update_many()
        .col_expr(task_info::Column::Result, Expr::value(result))
        .col_expr(task_info::Column::Message, Expr::value(message));
    if let Some(input) = input {
        update = update.col_expr(task_info::Column::Input, Expr::value(input));
    }
    update.filter(task_info::Column::TaskId.eq(claim.task_id)).exec(db).await?;
    Ok(true)
}

/// `input` without the caller's token and catalog (glance-download); `None` when it holds none
/// (nothing to change).
fn without_caller(mut input: serde_json::Value) -> Option<serde_json::Value> {
    input.as_object_mut().and_then(|fields| fields.remove(CALLER)).is_some().then_some(input)
}

/// The stored input of task `id` without the caller's token and catalog; `None` when it holds
/// none.
async fn stored_input_without_caller(db: &impl ConnectionTrait, id: &str) -> Result<Option<serde_json::Value>> {
    let stored = task_info::Entity::find_by_id(id.to_owned()).one(db).await?.and_then(|info| info.input);
    Ok(stored.and_then(without_caller))
}

/// The live task `id`, whoever owns it.
pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Task>> {
    let row = task::Entity::find_by_id(id.to_owned()).filter(task::Column::Deleted.eq(false)).one(db).await?;
    Ok(assemble(db, row.into_iter().collect()).await?.pop())
}

/// Fails task `id` if it is still pending or processing (its import lock was taken over);
/// a worker still running it loses its claim and stops.
pub async fn preempt(db: &impl ConnectionTrait, id: &str, message: &str, ttl: std::time::Duration) -> Result<()> {
    let at = now();
    let result = task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(TaskStatus::Failure.as_str()))
        .col_expr(task::Column::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::ExpiresAt, Expr::value(at + duration(ttl)?))
        .col_expr(task::Column::UpdatedAt, Expr::value(at))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.is_in([TaskStatus::Pending.as_str(), TaskStatus::Processing.as_str()]))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        forget_caller(db, id).await?;
        set_message(db, id, message).await?;
    }
    Ok(())
}

/// Drops the caller's token and catalog (glance-download) from task `id`'s input: they serve
/// the task until it ends, and nobody after it.
async fn forget_caller(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    if let Some(input) = stored_input_without_caller(db, id).await? {
        task_info::Entity::update_many()
            .col_expr(task_info::Column::Input, Expr::value(input))
            .filter(task_info::Column::TaskId.eq(id))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Shows progress `message` on `worker`'s running task `id`; `false` when the claim was lost.
pub async fn report_progress(db: &impl ConnectionTrait, id: &str, worker: &str, message: &str) -> Result<bool> {
    let claimed = task::Entity::update_many()
        .col_expr(task::Column::UpdatedAt, Expr::value(now()))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::ClaimedBy.eq(worker))
        .exec(db)
        .await?;
    if claimed.rows_affected == 0 {
        return Ok(false);
    }
    set_message(db, id, message).await?;
    Ok(true)
}

/// Sets the `message` of task `id` (its `task_info` row), once the caller has changed the task.
async fn set_message(db: &impl ConnectionTrait, id: &str, message: &str) -> Result<()> {
    task_info::Entity::update_many()
        .col_expr(task_info::Column::Message, Expr::value(message))
        .filter(task_info::Column::TaskId.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives `worker`'s task `id` back to `pending` for another attempt (a transient failure).
/// Its wake-up counts as published now: the worker publishes one after the backoff, and the
/// outbox relay only if that never comes.
pub async fn release(db: &impl ConnectionTrait, id: &str, worker: &str) -> Result<()> {
    let at = now();
    task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(TaskStatus::Pending.as_str()))
        .col_expr(task::Column::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::PublishedAt, Expr::value(at))
        .col_expr(task::Column::UpdatedAt, Expr::value(at))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::ClaimedBy.eq(worker))
        .exec(db)
        .await?;
    Ok(())
}

/// Undoes `worker`'s claim on `id` that it may not run yet (its project has its share of
/// running tasks): back to `pending`, the attempt not counted. It is woken again when one of
/// its project's tasks ends ([`next_pending_of`]), or by the relay.
pub async fn unclaim(db: &impl ConnectionTrait, id: &str, worker: &str) -> Result<()> {
    let at = now();
    task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(TaskStatus::Pending.as_str()))
        .col_expr(task::Column::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::Attempts, Expr::col(task::Column::Attempts).sub(1))
        .col_expr(task::Column::PublishedAt, Expr::value(at))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::ClaimedBy.eq(worker))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives `worker`'s task `id` back to `pending` because the worker is stopping and its shutdown
/// deadline passed before the task ended: the attempt is not counted (the task did nothing
/// wrong), and its wake-up counts as unpublished, so the outbox relay of any process wakes
/// another worker even if the stopping one's own publish gets nowhere. `false` when the worker
/// no longer held the claim.
pub async fn hand_over(db: &impl ConnectionTrait, id: &str, worker: &str) -> Result<bool> {
    let result = task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(TaskStatus::Pending.as_str()))
        .col_expr(task::Column::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::Attempts, Expr::col(task::Column::Attempts).sub(1))
        .col_expr(task::Column::PublishedAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::UpdatedAt, Expr::value(now()))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::ClaimedBy.eq(worker))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// How many tasks of project `owner` are running (claimed), on any worker.
pub async fn running_of(db: &impl ConnectionTrait, owner: &str) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(task::Entity::find()
        .filter(task::Column::Owner.eq(owner))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::Deleted.eq(false))
        .count(db)
        .await?)
}

/// The oldest pending task of project `owner` other than `except`: the next in its queue.
pub async fn next_pending_of(db: &impl ConnectionTrait, owner: &str, except: &str) -> Result<Option<String>> {
    let row = task::Entity::find()
        .filter(task::Column::Owner.eq(owner))
        .filter(task::Column::Status.eq(TaskStatus::Pending.as_str()))
        .filter(task::Column::Deleted.eq(false))
        .filter(task::Column::Id.ne(except))
        .order_by_asc(task::Column::CreatedAt)
        .one(db)
        .await?;
    Ok(row.map(|r| r.id))
}

/// How many times task `id` has been claimed.
pub async fn attempts(db: &impl ConnectionTrait, id: &str) -> Result<i32> {
    let row = task::Entity::find_by_id(id.to_owned()).one(db).await?;
    Ok(row.map_or(0, |r| r.attempts))
}

/// Pending tasks whose wake-up was never confirmed, or not for `republish_after`: the outbox
/// relay publishes them (again).
pub async fn unpublished(
    db: &impl ConnectionTrait,
    republish_after: std::time::Duration,
    limit: u64,
) -> Result<Vec<String>> {
    let cutoff = now() - duration(republish_after)?;
    let rows = task::Entity::find()
        .filter(task::Column::Status.eq(TaskStatus::Pending.as_str()))
        .filter(task::Column::Deleted.eq(false))
        .filter(Condition::any().add(task::Column::PublishedAt.is_null()).add(task::Column::PublishedAt.lte(cutoff)))
        .order_by_asc(task::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Records that task `id`'s wake-up was confirmed by the broker, while it is pending: a worker
/// that has claimed it already makes the mark moot, and then nothing is written. Lost in a
/// crash of the database server, a mark costs one more wake-up (harmless), so on PostgreSQL its
/// commit does not wait for the disk either: a worker claiming the task meanwhile waits for
/// the row only as long as the write takes.
pub async fn mark_published<C: ConnectionTrait + TransactionTrait>(db: &C, id: &str) -> Result<()> {
    let mark = task::Entity::update_many()
        .col_expr(task::Column::PublishedAt, Expr::value(now()))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Pending.as_str()));
    if db.get_database_backend() != DbBackend::Postgres {
        mark.exec(db).await?;
        return Ok(());
    }
    let txn = begin_unflushed(db).await?;
    mark.exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Puts back to `pending` every `processing` task whose worker stopped renewing its lease
/// (it died); the outbox relay then wakes another worker. Returns how many.
pub async fn release_expired_leases(db: &impl ConnectionTrait) -> Result<u64> {
    let at = now();
    let result = task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(TaskStatus::Pending.as_str()))
        .col_expr(task::Column::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::PublishedAt, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .col_expr(task::Column::UpdatedAt, Expr::value(at))
        .filter(task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(task::Column::LeaseExpiresAt.lt(at))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Soft-deletes tasks past their `expires_at`: they vanish from every listing. Done lazily,
/// before reads, as Glance does.
pub async fn purge_expired(db: &impl ConnectionTrait) -> Result<u64> {
    let at = now();
    let result = task::Entity::update_many()
        .col_expr(task::Column::Deleted, Expr::value(true))
        .col_expr(task::Column::DeletedAt, Expr::value(at))
        .filter(task::Column::Deleted.eq(false))
        .filter(task::Column::ExpiresAt.lt(at))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// The live task `id` if the caller may see it (admins all, others their project's): 404
/// otherwise.
pub async fn find_visible(db: &impl ConnectionTrait, ctx: &RequestContext, id: &str) -> Result<Task> {
    purge_expired(db).await?;
    let not_found = || Error::NotFound(format!("Task with the given id {id} not found"));
    let row = task::Entity::find_by_id(id.to_owned())
        .filter(task::Column::Deleted.eq(false))
        .filter(visible_to(ctx))
        .one(db)
        .await?
        .ok_or_else(not_found)?;
    assemble(db, vec![row]).await?.pop().ok_or_else(not_found)
}

/// Every live task of image `image_id` the caller may see, oldest first.
pub async fn for_image(db: &impl ConnectionTrait, ctx: &RequestContext, image_id: &str) -> Result<Vec<Task>> {
    purge_expired(db).await?;
    let rows = task::Entity::find()
        .filter(task::Column::Deleted.eq(false))
        .filter(task::Column::ImageId.eq(image_id))
        .filter(visible_to(ctx))
        .order_by_asc(task::Column::CreatedAt)
        .order_by_asc(task::Column::Id)
        .all(db)
        .await?;
    assemble(db, rows).await
}

pub(super) fn visible_to(ctx: &RequestContext) -> Condition {
    match (&ctx.project_id, ctx.is_admin) {
        (_, true) => Condition::all(),
        (Some(project), false) => Condition::all().add(task::Column::Owner.eq(project.as_str())),
        (None, false) => Condition::all().add(Expr::val(false)),
    }
}

pub(super) async fn assemble(db: &impl ConnectionTrait, rows: Vec<task::Model>) -> Result<Vec<Task>> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut infos: HashMap<String, task_info::Model> = HashMap::new();
    if !ids.is_empty() {
        for info in task_info::Entity::find().filter(task_info::Column::TaskId.is_in(ids)).all(db).await? {
            infos.insert(info.task_id.clone(), info);
        }
    }
    rows.into_iter()
        .map(|row| {
            let corrupt = |what: &str, value: &str| {
                Error::Database(DbErr::Custom(format!("task {}: stored {what} '{value}' is unknown", row.id)))
            };
            let info = infos.remove(&row.id);
            Ok(Task {
                task_type: row.task_type.parse().map_err(|_| corrupt("type", &row.task_type))?,
                status: row.status.parse().map_err(|_| corrupt("status", &row.status))?,
                input: info.as_ref().and_then(|i| i.input.clone()),
                result: info.as_ref().and_then(|i| i.result.clone()),
                message: info.map(|i| i.message).unwrap_or_default(),
                id: row.id,
                owner: row.owner,
                expires_at: row.expires_at,
                image_id: row.image_id,
                request_id: row.request_id,
                user_id: row.user_id,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
        })
        .collect()
}
