//! `POST /v2/images/{id}/locations` (API 2.17, docs/glance-v2-api.md §4.17): a location for
//! a queued image, recorded as a `location_import` task that holds the image's import lock.
//! A worker checks the location again, hashes its data when `do_secure_hash` is on and
//! compares it with the `validation_data`, then makes the image active with it.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde_json::{Map, Value, json};

use super::import::{IMPORT_TASK, check_lock_free};
use super::location_rules::check_location;
use super::{Action, Image, repo as images};
use crate::context::RequestContext;
use crate::store::Stores;
use crate::task::{Task, TaskType, repo as tasks};
use crate::{Error, Result, policy};

/// Hash algorithms `validation_data` may name (Glance's schema) and their digest sizes.
pub const ALGORITHMS: [(&str, usize); 4] = [("sha1", 20), ("sha256", 32), ("sha512", 64), ("md5", 16)];

/// A parsed request: the URL and the hash the caller vouches for, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddLocation {
    /// The location's URL.
    pub url: String,
    /// `validation_data`: `os_hash_algo` and `os_hash_value`.
    pub validation: Option<Validation>,
}

/// The hash of the data as the caller gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// One of [`ALGORITHMS`].
    pub algo: String,
    /// Lower-case hex digest.
    pub value: String,
}

/// How a refused `add_location` body is described.
const SCHEMA: &str = "Provided object does not match schema 'add_location'";

fn bad(why: impl std::fmt::Display) -> Error {
    bad_in(SCHEMA, why)
}

fn bad_in(context: &str, why: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("{context}: {why}"))
}

/// Parses the body as Glance's `add_location` schema does, then the hash as its
/// `_validate_hashing_data` does (400s).
pub fn parse(body: &Value) -> Result<AddLocation> {
    let Value::Object(fields) = body else { return Err(bad(format!("{body} is not of type 'object'"))) };
    let url = match fields.get("url") {
        Some(Value::String(url)) => url.clone(),
        Some(other) => return Err(bad(format!("{other} is not of type 'string'"))),
        None => return Err(bad("'url' is a required property")),
    };
    let validation = match fields.get("validation_data") {
        None => None,
        Some(Value::Object(data)) => validation(data, SCHEMA)?,
        Some(other) => return Err(bad(format!("{other} is not of type 'object'"))),
    };
    Ok(AddLocation { url, validation })
}

/// Parses a `validation_data` object (`os_hash_algo` and `os_hash_value`, both or neither),
/// its schema errors introduced by `context`; `None` when it names no hash. Web-download's
/// `method.validation_data` (a Glint extension) is checked here too.
pub(super) fn validation(data: &Map<String, Value>, context: &str) -> Result<Option<Validation>> {
    let bad = |why: String| bad_in(context, why);
    if let Some(key) = data.keys().find(|k| !matches!(k.as_str(), "os_hash_algo" | "os_hash_value")) {
        return Err(bad(format!("Additional properties are not allowed ('{key}' was unexpected)")));
    }
    let text = |key: &str, max: usize| match data.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(s)) => Err(bad(format!("'{s}' is too long"))),
        Some(other) => Err(bad(format!("{other} is not of type 'string'"))),
    };
    let (algo, value) = (text("os_hash_algo", 64)?, text("os_hash_value", 128)?);
    let (algo, value) = match (algo, value) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(bad("'os_hash_value' is a dependency of 'os_hash_algo'".into())),
        (None, Some(_)) => return Err(bad("'os_hash_algo' is a dependency of 'os_hash_value'".into())),
        (Some(algo), Some(value)) => (algo, value),
    };
    let Some((_, size)) = ALGORITHMS.iter().find(|(name, _)| *name == algo) else {
        return Err(bad(format!("'{algo}' is not one of ['sha1', 'sha256', 'sha512', 'md5']")));
    };
    let Ok(bytes) = hex::decode(&value) else {
        return Err(Error::BadRequest(format!("os_hash_value ({value}) is not a valid hexadecimal value")));
    };
    if bytes.len() != *size {
        return Err(Error::BadRequest(format!(
            "os_hash_value: ({value}) is not the correct size for ({algo}) (should be ({size}) bytes)"
        )));
    }
    Ok(Some(Validation { algo, value: value.to_ascii_lowercase() }))
}

/// The task's input, as Glance records it.
pub fn task_input(image_id: &str, request: &AddLocation) -> Value {
    let validation = request
        .validation
        .as_ref()
        .map_or_else(|| json!({}), |v| json!({"os_hash_algo": v.algo, "os_hash_value": v.value}));
    json!({"image_id": image_id, "loc_url": request.url, "validation_data": validation})
}

/// The request a task's input describes.
pub fn of_task(task: &Task) -> Result<(String, AddLocation)> {
    let input = task.input.as_ref().ok_or_else(|| Error::Internal("location_import task without input".into()))?;
    let image_id = input.get("image_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let body = json!({"url": input.get("loc_url"), "validation_data": input.get("validation_data")});
    let mut request = parse(&body).map_err(|e| Error::Internal(format!("corrupt location_import task: {e}")))?;
    if request.validation.as_ref().is_some_and(|v| v.value.is_empty()) {
        request.validation = None;
    }
    Ok((image_id, request))
}

/// Checks `request` for `image` in Glance's order (409 status, 403 policy and store, 400
/// hash) and records the task with the image's import lock in one transaction. Unlike
/// Glance, which finds a bad URL only when its task runs, the location is checked here too
/// ([`check_location`](super::location_rules::check_location)), so a refused URL is a 400 and no task.
pub async fn accept(
    db: &DatabaseConnection,
    stores: &Stores,
    ctx: &RequestContext,
    image: &Image,
    request: &AddLocation,
    task_ttl: Duration,
) -> Result<Task> {
    image.status.next(Action::AddLocation)?;
    policy::check_image(ctx, image, "add_image_location")?;
    // Glance opens the other stores to services only: a user could otherwise name data of
    // the service's own stores.
    let http_store = stores.all().any(|(_, store)| !store.writable() && store.holds(&request.url));
    if !(ctx.has_role("service") || http_store) {
        return Err(Error::Forbidden("http store must be enabled to use location API by normal user.".into()));
    }
    check_lock_free(db, image, task_ttl).await?;
    check_location(db, stores, &image.id, &request.url).await?;
    let task = Task::pending(ctx, TaskType::LocationImport, image.id.clone(), task_input(&image.id, request));
    db.transaction_async(async |txn| {
        tasks::insert(txn, &task).await?;
        if !images::add_property_if_absent(txn, &image.id, IMPORT_TASK, &task.id).await? {
            return Err(Error::Conflict(format!(
                "New operation on image '{}' is not permitted as prior operation is still in progress",
                image.id
            )));
        }
        Ok(())
    })
    .await?;
    Ok(task)
}
