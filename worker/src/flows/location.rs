//! `location_import` (API 2.17, `POST /v2/images/{id}/locations`): the location checked
//! again, its data hashed when `do_secure_hash` is on (and compared with the
//! `validation_data`), then image `active` with the location, lock released and task
//! `success` in one transaction. A failure puts the image back to `queued` without the
//! location: no image stays `importing`.

use glint_core::image::data::{self, Hasher};
use glint_core::image::import::IMPORT_TASK;
use glint_core::image::location_import::{self, AddLocation};
use glint_core::image::repo::{self as images, Located};
use glint_core::image::{HASH_ALGO, Image, Status, location_rules, locations};
use glint_core::task::{Task, repo as tasks};
use serde_json::json;

use super::{Deps, Progress};
use crate::{Flow, FlowContext, FlowError};

/// Runs `location_import` tasks.
pub struct LocationFlow {
    deps: Deps,
}

impl LocationFlow {
    /// The flow over `deps`.
    pub fn new(deps: Deps) -> Self {
        LocationFlow { deps }
    }

    /// The image, if it still exists and this task holds its import lock.
    async fn locked_image(&self, ctx: &FlowContext, task: &Task, image_id: &str) -> Result<Image, FlowError> {
        let image = images::get(&ctx.db, image_id)
            .await?
            .ok_or_else(|| FlowError::Abort("Image has been deleted, aborting location import.".into()))?;
        if image.properties.get(IMPORT_TASK).cloned().flatten().as_deref() != Some(task.id.as_str()) {
            return Err(FlowError::Abort("The image's import lock was taken over by another operation.".into()));
        }
        Ok(image)
    }

    /// The md5 and `algo` digest of the data at `url` in `store`, read up to `http_retries`
    /// times; the last read's error when every one failed.
    async fn hash(
        &self,
        store_id: &str,
        url: &str,
        algo: &str,
        progress: &Progress,
    ) -> Result<(String, String), String> {
        let store = self.deps.stores.get(store_id).ok_or_else(|| format!("store {store_id} is not configured"))?;
        let attempts = self.deps.config.images.http_retries.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let hasher = Hasher::of(algo).ok_or_else(|| format!("unknown hash algorithm {algo}"))?;
            let read = async {
                let body = store.get(url, None).await.map_err(std::io::Error::other)?;
                data::digest(progress.count(body, None), hasher).await
            };
            match read.await {
                Ok(digests) => return Ok(digests),
                Err(err) => {
                    tracing::debug!(url, attempt, attempts, error = %err, "hash calculation failed");
                    last = err.to_string();
                }
            }
        }
        Err(last)
    }

    /// What to record about the data: hashed and checked against the `validation_data` with
    /// `do_secure_hash`, the `validation_data` as given without.
    async fn locate(
        &self,
        image: &Image,
        request: &AddLocation,
        store_id: &str,
        size: i64,
        progress: &Progress,
    ) -> Result<Located, FlowError> {
        let mut located = Located { size, ..Located::default() };
        if !self.deps.config.images.do_secure_hash {
            located.hash = request.validation.as_ref().map(|v| (v.algo.clone(), v.value.clone()));
            return Ok(located);
        }
        let algo = request.validation.as_ref().map_or(HASH_ALGO, |v| v.algo.as_str());
        match (self.hash(store_id, &request.url, algo, progress).await, &request.validation) {
            (Ok((_, hash)), Some(given)) if hash != given.value => Err(FlowError::Abort(format!(
                "os_hash_value: ({}) not matched with actual os_hash_value: ({hash})",
                given.value
            ))),
            (Ok((md5, hash)), _) => {
                located.checksum = Some(md5);
                located.hash = Some((algo.to_owned(), hash));
                Ok(located)
            }
            (Err(err), Some(_)) => {
                tracing::warn!(image = %image.id, error = %err, "hash calculation failed");
                Err(FlowError::Abort(format!("Hash calculation failed for image {} data", image.id)))
            }
            // Glance keeps such an image active without a hash, and so does Glint.
            (Err(err), None) => {
                tracing::warn!(image = %image.id, error = %err, "hash calculation failed; the image has no checksum");
                Ok(located)
            }
        }
    }
}

#[async_trait::async_trait]
impl Flow for LocationFlow {
    async fn run(&self, ctx: &FlowContext, task: &Task) -> Result<(), FlowError> {
        let (image_id, request) = location_import::of_task(task).map_err(|e| FlowError::Abort(e.to_string()))?;
        let image = self.locked_image(ctx, task, &image_id).await?;
        if image.status == Status::Queued {
            images::set_status(&ctx.db, &image_id, Status::Queued, Status::Importing).await?;
        } else if image.status != Status::Importing {
            return Err(FlowError::Abort(format!("Image changed status to {}, aborting.", image.status)));
        }
        let (store_id, size) = location_rules::check_location(&ctx.db, &self.deps.stores, &image_id, &request.url)
            .await
            .map_err(|e| match e {
                glint_core::Error::BadRequest(why) => FlowError::Abort(why),
                other => other.into(),
            })?;
        let size = i64::try_from(size).map_err(|_| FlowError::Abort("Invalid location".into()))?;
        let progress = Progress::new(ctx);
        let located = progress.around(ctx, task, self.locate(&image, &request, &store_id, size, &progress)).await?;
        let metadata = serde_json::Map::from_iter([("store".to_owned(), json!(store_id))]);
        let committed = ctx
            .db
            .transaction_async(async |txn| -> Result<bool, FlowError> {
                if !tasks::succeed_in(txn, &ctx.claim(task), json!({"image_id": image_id})).await? {
                    return Ok(false);
                }
                if !images::activate_located(txn, &image_id, &located).await? {
                    return Err(FlowError::Abort("Image changed status during the location import, aborting.".into()));
                }
                locations::insert_with_metadata(txn, &image_id, &request.url, metadata.clone()).await?;
                if !images::remove_property_if(txn, &image_id, IMPORT_TASK, &task.id).await? {
                    return Err(FlowError::Abort(
                        "The image's import lock was taken over by another operation.".into(),
                    ));
                }
                Ok(true)
            })
            .await?;
        if committed {
            tracing::info!(task = %task.id, image = %image_id, store = %store_id, "location added");
        }
        Ok(())
    }

    async fn fail(&self, ctx: &FlowContext, task: &Task, reason: &str) -> glint_core::Result<()> {
        let image_id = location_import::of_task(task).ok().map(|(id, _)| id);
        ctx.db
            .transaction_async(async |txn| -> glint_core::Result<()> {
                if !tasks::fail_in(txn, &ctx.claim(task), reason).await? {
                    return Ok(());
                }
                let Some(image_id) = &image_id else { return Ok(()) };
                if images::remove_property_if(txn, image_id, IMPORT_TASK, &task.id).await? {
                    images::back_to_queued(txn, image_id, Status::Importing).await?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}
