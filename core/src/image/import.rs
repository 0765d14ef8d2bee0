//! Interoperable image import: the request, its validation in Glance's order, and recording
//! it as a task that holds the image's import lock.
//!
//! The API only records: one transaction inserts the task, moves the image to `importing`
//! and takes the lock (`os_glance_import_task`). Workers do the rest (see glint-worker).

use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use super::location_import::{Validation, validation};
use super::repo as images;
use super::{Action, Image};
use crate::context::RequestContext;
use crate::db::now;
use crate::fetch::Fetcher;
use crate::store::Stores;
use crate::task::{Task, TaskStatus, TaskType, repo as tasks};
use crate::{Error, Result, policy};

/// The image property naming the task that holds the image's import lock.
pub const IMPORT_TASK: &str = "os_glance_import_task";
/// Stores an import is still writing to (comma-separated; `""` in single-store mode).
pub const IMPORTING_TO_STORES: &str = "os_glance_importing_to_stores";
/// Stores an import failed to write to.
pub const FAILED_IMPORT: &str = "os_glance_failed_import";

/// The import methods Glint can run.
pub const METHODS: [&str; 4] = ["glance-direct", "web-download", "glance-download", "copy-image"];

/// The import methods offered to clients (`GET /v2/info/import`, the
/// `OpenStack-image-import-methods` header): the enabled ones Glint can run, in the configured
/// order as Glance lists its `enabled_import_methods`, each once.
pub fn offered(enabled: &[String]) -> Vec<&'static str> {
    let mut offered = Vec::new();
    for name in enabled {
        if let Some(method) = METHODS.into_iter().find(|m| m == name)
            && !offered.contains(&method)
        {
            offered.push(method);
        }
    }
    offered
}

/// A lock whose task has not moved for this long is stale and may be taken over (Glance's
/// figures; a running import reports progress, which counts as moving).
const LOCK_STALE_PROCESSING: Duration = Duration::from_secs(60 * 60);
const LOCK_STALE_PENDING: Duration = Duration::from_secs(120 * 60);

/// Where the data of an import comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// Data staged before with `PUT .../stage`.
    GlanceDirect,
    /// Data fetched from a URL.
    WebDownload {
        /// What to fetch.
        uri: String,
        /// `method.validation_data` (a Glint extension): the hash the downloaded bytes must
        /// have, else the import fails.
        validation: Option<Validation>,
    },
    /// Data and some metadata of an image of another region's image service.
    GlanceDownload(Remote),
    /// Data of the active image, copied to more stores.
    CopyImage,
}

/// The image a glance-download copies: where it is, as the request names it (checked by
/// [`Importer::accept`], so that the status checks come first, as in Glance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// `glance_image_id`: the image's id in the other region.
    pub image_id: String,
    /// `glance_region`: the region whose image endpoint the Keystone catalog gives.
    pub region: String,
    /// `glance_service_interface`: the endpoint interface (`public` when not given).
    pub interface: String,
}

/// What a glance-download worker needs of the caller, kept in the task's input (never shown):
/// the token the remote image is read with, the catalog its endpoint is found in, and the
/// roles the copied properties are judged by (property protections).
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The caller's token (`X-Auth-Token`), if it sent one.
    pub auth_token: Option<String>,
    /// The service catalog of that token (Keystone's v3 form, or the v2 form of a
    /// keystonemiddleware `X-Service-Catalog`); `None` when the request came without one.
    pub service_catalog: Option<Value>,
    /// The caller's roles, implied ones included.
    pub roles: Vec<String>,
}

/// The task input key that holds the [`Caller`].
pub const CALLER: &str = "caller";

impl Caller {
    fn to_json(&self) -> Value {
        json!({"auth_token": self.auth_token, "service_catalog": self.service_catalog, "roles": self.roles})
    }

    fn of(input: &Value) -> Option<Caller> {
        let caller = input.get(CALLER)?;
        Some(Caller {
            auth_token: caller.get("auth_token").and_then(Value::as_str).map(str::to_owned),
            service_catalog: caller.get("service_catalog").filter(|c| !c.is_null()).cloned(),
            roles: caller
                .get("roles")
                .and_then(Value::as_array)
                .map(|roles| roles.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }
}

impl Method {
    /// The method's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Method::GlanceDirect => "glance-direct",
            Method::WebDownload { .. } => "web-download",
            Method::GlanceDownload(_) => "glance-download",
            Method::CopyImage => "copy-image",
        }
    }

    fn action(&self) -> Action {
        match self {
            Method::GlanceDirect => Action::ImportStaged,
            Method::WebDownload { .. } | Method::GlanceDownload(_) => Action::ImportRemote,
            Method::CopyImage => Action::Copy,
        }
    }
}

/// A parsed `POST /v2/images/{id}/import` body.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    /// How the data arrives.
    pub method: Method,
    /// Stores asked for by id (`stores`).
    pub stores: Option<Vec<String>>,
    /// `all_stores`: every writable store.
    pub all_stores: bool,
    /// `all_stores_must_succeed`: one failing store fails the import.
    pub all_stores_must_succeed: bool,
    /// The body as sent (glance-download's interface defaulted), kept in the task's input.
    pub body: Value,
    /// For glance-download: the caller's token and catalog, which the API adds.
    pub caller: Option<Caller>,
}

/// Parses an import body (validation steps 1 and 2 of docs/glance-v2-api.md §4.9).
pub fn parse(mut body: Value, enabled: &[String]) -> Result<ImportRequest> {
    let method =
        body.get("method").ok_or_else(|| Error::BadRequest("Import request requires a 'method' field.".into()))?;
    let name = method
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::BadRequest("Import request requires a 'name' field.".into()))?;
    if !enabled.iter().any(|m| m == name) || !METHODS.contains(&name) {
        return Err(Error::BadRequest(format!("Unknown import method name '{name}'.")));
    }
    let method = match name {
        "glance-direct" => Method::GlanceDirect,
        "copy-image" => Method::CopyImage,
        "glance-download" => {
            let field = |key: &str| method.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            let interface = method.get("glance_service_interface").and_then(Value::as_str).unwrap_or("public");
            let remote = Remote {
                image_id: field("glance_image_id"),
                region: field("glance_region"),
                interface: interface.into(),
            };
            // Glance records the default interface in the request the task keeps.
            if method.get("glance_service_interface").is_none()
                && let Some(method) = body.get_mut("method").and_then(Value::as_object_mut)
            {
                method.insert("glance_service_interface".into(), json!("public"));
            }
            Method::GlanceDownload(remote)
        }
        _ => Method::WebDownload {
            uri: method.get("uri").and_then(Value::as_str).unwrap_or_default().to_owned(),
            validation: web_validation(method)?,
        },
    };
    let flag = |key: &str, default: bool| match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Error::BadRequest(format!("Invalid value '{other}' for '{key}': expected a boolean"))),
    };
    let all_stores_must_succeed = flag("all_stores_must_succeed", true)?;
    let all_stores = flag("all_stores", false)?;
    let stores = match body.get("stores") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::BadRequest("'stores' must be a list of store ids".into()))?,
        ),
        Some(_) => return Err(Error::BadRequest("'stores' must be a list of store ids".into())),
    };
    Ok(ImportRequest { method, stores, all_stores, all_stores_must_succeed, body, caller: None })
}

/// Whether Python's `uuid.UUID(text)` takes `text`: 32 hex digits once `urn:`, `uuid:`,
/// surrounding braces and hyphens are dropped.
fn python_uuid(text: &str) -> bool {
    let text = text.replace("urn:", "").replace("uuid:", "");
    let digits = text.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    digits.len() == 32 && digits.chars().all(|c| c.is_ascii_hexdigit())
}

/// glance-download's fields (step 5 of §4.9), in Glance's words: region and image id
/// present, the id a UUID (in any form Python's `uuid.UUID` reads), each a string.
fn check_glance_download(method: &Value) -> Result<()> {
    for key in ["glance_region", "glance_image_id"] {
        match method.get(key) {
            None => {
                return Err(Error::BadRequest(format!("'{key}' needs to be set for glance-download import method")));
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(Error::BadRequest(format!("Invalid value '{other}' for '{key}': expected a string")));
            }
        }
    }
    if let Some(interface) = method.get("glance_service_interface").filter(|i| !i.is_string()) {
        return Err(Error::BadRequest(format!(
            "Invalid value '{interface}' for 'glance_service_interface': expected a string"
        )));
    }
    let id = method.get("glance_image_id").and_then(Value::as_str).unwrap_or_default();
    if !python_uuid(id) {
        return Err(Error::BadRequest(format!("Remote image id does not look like a UUID: {id}")));
    }
    Ok(())
}

/// Web-download's `method.validation_data`, shaped like the 2.17 location API's (a Glint
/// extension that Glance ignores): a 400 for an unknown algorithm or a malformed digest.
fn web_validation(method: &Value) -> Result<Option<Validation>> {
    const CONTEXT: &str = "Invalid 'validation_data' for web-download";
    match method.get("validation_data") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(data)) => validation(data, CONTEXT),
        Some(other) => Err(Error::BadRequest(format!("{CONTEXT}: {other} is not of type 'object'"))),
    }
}

/// What the API needs to accept an import.
pub struct Importer<'a> {
    /// The metadata database.
    pub db: &'a DatabaseConnection,
    /// The configured stores.
    pub stores: &'a Stores,
    /// Checks web-download URLs.
    pub fetcher: &'a Fetcher,
    /// How long finished tasks are kept (for a preempted lock holder).
    pub task_ttl: Duration,
}

impl Importer<'_> {
    /// Validates `request` for `image` (steps 4–10 of §4.9; the image was found visible) and
    /// records it: task, image status and lock in one transaction. `header_store` is
    /// `X-Image-Meta-Store`. `None` when there is nothing to do (a copy to all stores that
    /// already hold the image).
    pub async fn accept(
        &self,
        ctx: &RequestContext,
        image: &Image,
        request: &ImportRequest,
        header_store: Option<&str>,
    ) -> Result<Option<Task>> {
        let next = image.status.next(request.method.action())?;
        if image.disk_format.is_none() || image.container_format.is_none() {
            return Err(Error::Conflict("'disk_format' and 'container_format' must be set before import".into()));
        }
        if let Method::GlanceDownload(_) = request.method {
            check_glance_download(&request.body["method"])?;
        }
        let rule = if request.method == Method::CopyImage { "copy_image" } else { "modify_image" };
        policy::check_image(ctx, image, rule)?;
        check_lock_free(self.db, image, self.task_ttl).await?;
        let Some(targets) = self.targets(image, request, header_store)? else {
            return Ok(None);
        };
        if !request.all_stores_must_succeed && !self.stores.multistore() {
            return Err(Error::BadRequest(
                "all_stores_must_succeed can only be false when multiple stores are configured".into(),
            ));
        }
        if let Method::WebDownload { uri, .. } = &request.method {
            let shown = crate::fetch::redacted(uri);
            let refused = || Error::BadRequest(format!("URI for web-download does not pass filtering: {shown}"));
            if uri.is_empty() {
                return Err(refused());
            }
            if let Err(err) = self.fetcher.check(uri).await {
                tracing::info!(uri = %shown, reason = %err, "web-download refused");
                return Err(refused());
            }
        }
        let backend: Vec<Value> = targets.iter().map(|s| s.as_deref().map_or(Value::Null, |s| json!(s))).collect();
        let mut input = json!({"image_id": image.id, "import_req": request.body, "backend": backend});
        if let Some(caller) = &request.caller {
            input[CALLER] = caller.to_json();
        }
        let task = Task::pending(ctx, TaskType::ApiImageImport, image.id.clone(), input);
        let importing = targets.iter().flatten().cloned().collect::<Vec<_>>();
        self.db
            .transaction_async(async |txn| {
                tasks::insert(txn, &task).await?;
                if next != image.status {
                    images::set_status(txn, &image.id, image.status, next).await?;
                }
                if !images::add_property_if_absent(txn, &image.id, IMPORT_TASK, &task.id).await? {
                    return Err(Error::Conflict(format!(
                        "New operation on image '{}' is not permitted as prior operation is still in progress",
                        image.id
                    )));
                }
                let failed = image.properties.get(FAILED_IMPORT).cloned().flatten().unwrap_or_default();
                let still_failed = remove_stores(&failed, &importing);
                let importing = join_stores(&image.properties, IMPORTING_TO_STORES, &importing);
                images::set_properties(
                    txn,
                    &image.id,
                    &[(IMPORTING_TO_STORES, Some(&importing)), (FAILED_IMPORT, Some(&still_failed))],
                )
                .await
            })
            .await?;
        Ok(Some(task))
    }

    /// The stores to import to (step 8): `[None]` in single-store mode.
    fn targets(
        &self,
        image: &Image,
        request: &ImportRequest,
        header_store: Option<&str>,
    ) -> Result<Option<Vec<Option<String>>>> {
        if !self.stores.multistore() {
            return Ok(Some(vec![None]));
        }
        if request.all_stores && (request.stores.is_some() || header_store.is_some()) {
            return Err(Error::BadRequest("all_stores cannot be combined with stores or X-Image-Meta-Store".into()));
        }
        let copying = request.method == Method::CopyImage;
        let wanted: Vec<String> = if request.all_stores {
            let all = self.stores.all().filter(|(_, store)| store.writable()).map(|(id, _)| id.to_owned());
            all.filter(|id| !(copying && image.stores.contains(id))).collect()
        } else if let Some(stores) = &request.stores {
            stores.clone()
        } else if let Some(store) = header_store {
            vec![store.to_owned()]
        } else {
            vec![self.stores.default_id().to_owned()]
        };
        for id in &wanted {
            match self.stores.get(id) {
                None => return Err(Error::Conflict(format!("Unknown store '{id}'"))),
                Some(store) if !store.writable() => {
                    return Err(Error::BadRequest(format!("Store {id} is read-only")));
                }
                Some(_) => {}
            }
            if copying && image.stores.contains(id) {
                return Err(Error::BadRequest(format!("Image is already present at store '{id}'")));
            }
        }
        Ok((!wanted.is_empty()).then(|| wanted.into_iter().map(Some).collect()))
    }
}

/// 409 if another import (or location task) holds `image`'s lock and is alive; a stale lock
/// is taken over (its task fails with `Expired lock preempted`).
pub(super) async fn check_lock_free(db: &DatabaseConnection, image: &Image, task_ttl: Duration) -> Result<()> {
    let Some(Some(holder)) = image.properties.get(IMPORT_TASK) else {
        return Ok(());
    };
    if let Some(task) = tasks::get(db, holder).await? {
        let idle = (now() - task.updated_at).to_std().unwrap_or_default();
        let live = match task.status {
            TaskStatus::Pending => idle < LOCK_STALE_PENDING,
            TaskStatus::Processing => idle < LOCK_STALE_PROCESSING,
            // A finished task always releases its lock with its last write; one that did
            // not is a leftover.
            TaskStatus::Success | TaskStatus::Failure => false,
        };
        if live {
            return Err(Error::Conflict("Image has active task".into()));
        }
        tasks::preempt(db, holder, "Expired lock preempted", task_ttl).await?;
    }
    tracing::warn!(image = %image.id, task = %holder, "taking over a stale import lock");
    images::remove_property_if(db, &image.id, IMPORT_TASK, holder).await?;
    Ok(())
}

/// Validates a legacy `POST /v2/tasks` body (type `import`) and builds its pending task; the
/// image it will create gets its id now, recorded as the task's `image_id`, so that a retried
/// attempt fills the same image.
pub async fn legacy_task(
    ctx: &RequestContext,
    body: &Value,
    fetcher: &Fetcher,
    images_config: &crate::config::ImagesConfig,
    validator: &crate::image::schema::Validator,
) -> Result<Task> {
    let bad = |text: String| Error::BadRequest(text);
    let fields = body.as_object().ok_or_else(|| bad("Task must be a JSON object".into()))?;
    if let Some(key) = fields.keys().find(|k| !matches!(k.as_str(), "type" | "input")) {
        return Err(bad(format!("Attribute '{key}' is read-only.")));
    }
    let task_type = match fields.get("type") {
        None => return Err(bad("Task 'type' is required".into())),
        Some(Value::String(t)) => t.as_str(),
        Some(other) => return Err(bad(format!("Invalid type value: {other}"))),
    };
    if task_type != TaskType::Import.as_str() {
        return Err(bad(format!("Invalid type value: {task_type}")));
    }
    let input = match fields.get("input") {
        None => return Err(bad("Task 'input' is required".into())),
        Some(Value::Object(input)) => input,
        Some(_) => return Err(bad("Task 'input' must be a JSON object".into())),
    };
    let url = input
        .get("import_from")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Input does not contain 'import_from' field".into()))?;
    if url.to_ascii_lowercase().starts_with("file:") {
        return Err(bad("File based imports are not allowed. Please use a non-local source of image data.".into()));
    }
    let shown = crate::fetch::redacted(url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(format!(
            "The given uri is not valid. Please specify a valid uri from the following list of supported uri ['http', 'https']: {shown}"
        )));
    }
    if let Err(err) = fetcher.check(url).await {
        tracing::info!(uri = %shown, reason = %err, "legacy import refused");
        return Err(bad(format!("URI for legacy import task does not pass filtering: {shown}")));
    }
    let properties = match input.get("image_properties") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(bad("'image_properties' must be a JSON object".into())),
    };
    crate::image::new_image(properties, ctx, images_config, validator)?;
    Ok(Task::pending(ctx, TaskType::Import, uuid::Uuid::new_v4().to_string(), Value::Object(input.clone())))
}

/// The comma-separated list in property `name` plus `more`, without duplicates.
fn join_stores(properties: &std::collections::BTreeMap<String, Option<String>>, name: &str, more: &[String]) -> String {
    let current = properties.get(name).cloned().flatten().unwrap_or_default();
    let mut all: Vec<String> = current.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    for store in more {
        if !all.contains(store) {
            all.push(store.clone());
        }
    }
    all.join(",")
}

/// The comma-separated list `list` without `gone`.
pub fn remove_stores(list: &str, gone: &[String]) -> String {
    list.split(',').filter(|s| !s.is_empty() && !gone.iter().any(|g| g == s)).collect::<Vec<_>>().join(",")
}

/// An accepted import as a worker reads it back from the task's input.
#[derive(Clone, Debug)]
pub struct ImportJob {
    /// The image being imported.
    pub image_id: String,
    /// How the data arrives.
    pub method: Method,
    /// Target stores; `None` = the default store (single-store mode).
    pub stores: Vec<Option<String>>,
    /// One failing store fails the import.
    pub all_stores_must_succeed: bool,
    /// The caller's token and catalog (glance-download).
    pub caller: Option<Caller>,
}

impl ImportJob {
    /// Reads the job out of an `api_image_import` task; an error means a corrupt task.
    pub fn of(task: &Task) -> Result<ImportJob> {
        let corrupt = |what: &str| Error::Internal(format!("task {} has no valid {what} in its input", task.id));
        let input = task.input.as_ref().ok_or_else(|| corrupt("input"))?;
        let image_id = input.get("image_id").and_then(Value::as_str).ok_or_else(|| corrupt("image_id"))?;
        let request = parse(input.get("import_req").cloned().unwrap_or(Value::Null), &METHODS.map(String::from))?;
        let stores = match input.get("backend").and_then(Value::as_array) {
            Some(items) => items.iter().map(|s| s.as_str().map(str::to_owned)).collect(),
            None => vec![None],
        };
        Ok(ImportJob {
            image_id: image_id.to_owned(),
            method: request.method,
            stores,
            all_stores_must_succeed: request.all_stores_must_succeed,
            caller: Caller::of(input),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Vec<String> {
        METHODS.map(String::from).to_vec()
    }

    #[test]
    fn missing_method_or_name_and_unknown_names_are_refused_in_order() {
        let err = |body: Value| parse(body, &enabled()).expect_err("refused").to_string();
        assert_eq!(err(json!({})), "Import request requires a 'method' field.");
        assert_eq!(err(json!({"method": {}})), "Import request requires a 'name' field.");
        let by_default = crate::config::ImportConfig::default().enabled_import_methods;
        let refused = parse(json!({"method": {"name": "glance-download"}}), &by_default).expect_err("opt-in");
        assert_eq!(refused.to_string(), "Unknown import method name 'glance-download'.");
        assert_eq!(err(json!({"method": {"name": "glance-upload"}})), "Unknown import method name 'glance-upload'.");
        let only_direct = vec!["glance-direct".to_owned()];
        assert!(parse(json!({"method": {"name": "web-download", "uri": "http://x/"}}), &only_direct).is_err());
    }

    #[test]
    fn offered_methods_keep_the_configured_order_without_unknown_names_or_repeats() {
        let enabled = ["copy-image", "glance-download", "glance-direct", "copy-image"].map(String::from);
        assert_eq!(offered(&enabled), ["copy-image", "glance-download", "glance-direct"]);
        assert_eq!(offered(&["web-upload".to_owned(), "web-download".to_owned()]), ["web-download"]);
        assert!(offered(&[]).is_empty());
    }

    #[test]
    fn store_flags_must_be_booleans() {
        let body = json!({"method": {"name": "glance-direct"}, "all_stores": "yes"});
        assert!(matches!(parse(body, &enabled()), Err(Error::BadRequest(_))));
        let body = json!({"method": {"name": "copy-image"}, "all_stores_must_succeed": false, "stores": ["a"]});
        let request = parse(body, &enabled()).expect("parses");
        assert_eq!(
            (request.method, request.all_stores_must_succeed, request.stores),
            (Method::CopyImage, false, Some(vec!["a".into()]))
        );
    }

    #[test]
    fn web_download_validation_data_is_parsed_and_checked() {
        let body =
            |data: Value| json!({"method": {"name": "web-download", "uri": "http://x/", "validation_data": data}});
        let sha256 = "A".repeat(64);
        let request = parse(body(json!({"os_hash_algo": "sha256", "os_hash_value": sha256})), &enabled()).expect("ok");
        let Method::WebDownload { validation: Some(given), .. } = request.method else { panic!("no validation") };
        assert_eq!((given.algo.as_str(), given.value), ("sha256", "a".repeat(64)));
        let without = parse(json!({"method": {"name": "web-download", "uri": "http://x/"}}), &enabled()).expect("ok");
        assert!(matches!(without.method, Method::WebDownload { validation: None, .. }));
        let err = |data: Value| parse(body(data), &enabled()).expect_err("refused").to_string();
        assert!(err(json!({"os_hash_algo": "crc32", "os_hash_value": "00"})).contains("'crc32' is not one of"));
        assert!(err(json!({"os_hash_algo": "md5", "os_hash_value": "zz"})).contains("not a valid hexadecimal"));
        assert!(err(json!({"os_hash_algo": "md5", "os_hash_value": "00"})).contains("not the correct size"));
        assert!(err(json!({"os_hash_algo": "md5"})).contains("dependency"));
        assert!(err(json!("sha256:00")).contains("is not of type 'object'"));
    }

    #[test]
    fn glance_download_names_the_remote_image_and_defaults_to_the_public_interface() {
        let id = "c4705b36-b281-40f6-a01d-bf98883ead8e";
        let body = json!({"method": {"name": "glance-download", "glance_image_id": id, "glance_region": "R2"}});
        let request = parse(body, &enabled()).expect("parses");
        let remote = Remote { image_id: id.into(), region: "R2".into(), interface: "public".into() };
        assert_eq!(request.method, Method::GlanceDownload(remote));
        assert_eq!(request.body["method"]["glance_service_interface"], "public", "kept for the task");
        assert_eq!(check_glance_download(&request.body["method"]).map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn glance_download_needs_a_region_and_a_uuid_as_glance_words_it() {
        let err = |method: Value| check_glance_download(&method).expect_err("refused").to_string();
        let id = "c4705b36-b281-40f6-a01d-bf98883ead8e";
        assert_eq!(
            err(json!({"glance_image_id": id})),
            "'glance_region' needs to be set for glance-download import method"
        );
        assert_eq!(
            err(json!({"glance_region": "R2"})),
            "'glance_image_id' needs to be set for glance-download import method"
        );
        assert_eq!(
            err(json!({"glance_region": "R2", "glance_image_id": "not-a-uuid"})),
            "Remote image id does not look like a UUID: not-a-uuid"
        );
        assert!(err(json!({"glance_region": 2, "glance_image_id": id})).contains("expected a string"));
        let braced = json!({"glance_region": "R2", "glance_image_id": "{C4705B36B28140F6A01DBF98883EAD8E}"});
        assert!(check_glance_download(&braced).is_ok(), "Python's uuid.UUID reads this form too");
        assert!(python_uuid("urn:uuid:c4705b36-b281-40f6-a01d-bf98883ead8e") && python_uuid(&"a".repeat(32)));
        assert!(
            !python_uuid(&"g".repeat(32)) && !python_uuid("c4705b36-b281-40f6-a01d-bf98883ead8") && !python_uuid("")
        );
    }

    #[test]
    fn the_caller_is_kept_for_the_worker_and_read_back() {
        let caller = Caller {
            auth_token: Some("t".into()),
            service_catalog: Some(json!([{"type": "image"}])),
            roles: vec!["member".into(), "reader".into()],
        };
        let input = json!({CALLER: caller.to_json()});
        assert_eq!(Caller::of(&input), Some(caller));
        assert_eq!(Caller::of(&json!({})), None);
    }

    #[test]
    fn store_lists_drop_and_add_without_duplicates() {
        assert_eq!(remove_stores("a,b,c", &["b".into()]), "a,c");
        assert_eq!(remove_stores("", &["b".into()]), "");
        let properties = std::collections::BTreeMap::from([(IMPORTING_TO_STORES.to_owned(), Some("a".to_owned()))]);
        assert_eq!(join_stores(&properties, IMPORTING_TO_STORES, &["a".into(), "b".into()]), "a,b");
    }
}
