//! `import` tasks of the legacy tasks API: create an image from `image_properties` and fill
//! it from `import_from` (docs/glance-v2-api.md §4.14). On failure the image is deleted.
//!
//! The API chose the image id (the task's `image_id`), so a retried attempt finds the image
//! an earlier attempt created instead of making a second one.

use glint_core::context::RequestContext;
use glint_core::image::data::{self, Upload};
use glint_core::image::repo as images;
use glint_core::image::schema::Validator;
use glint_core::image::{Status, new_image};
use glint_core::task::{Task, repo as tasks};
use serde_json::{Value, json};

use super::{Deps, Progress};
use crate::{Flow, FlowContext, FlowError};

/// Runs legacy `import` tasks.
pub struct LegacyImportFlow {
    deps: Deps,
    validator: Validator,
}

impl LegacyImportFlow {
    /// The flow over `deps`.
    pub fn new(deps: Deps) -> Self {
        let validator = Validator::new(&deps.config.images);
        LegacyImportFlow { deps, validator }
    }

    /// The task's image, created from `image_properties` on the first attempt.
    async fn image(
        &self,
        ctx: &FlowContext,
        task: &Task,
        image_id: &str,
    ) -> Result<glint_core::image::Image, FlowError> {
        if let Some(image) = images::get(&ctx.db, image_id).await? {
            return Ok(image);
        }
        let input = task.input.clone().unwrap_or(Value::Null);
        let properties = input.get("image_properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let owner = Some(task.owner.clone()).filter(|o| !o.is_empty());
        let request_id = task.request_id.clone().unwrap_or_default();
        // The tasks API authorized the creator; a task without an owner came from no-auth's
        // anonymous admin, whose image has no owner either.
        let caller = match owner {
            Some(owner) => RequestContext::new(Some(owner), task.user_id.clone(), ["member".to_owned()], request_id),
            None => RequestContext::anonymous_admin(request_id),
        };
        let mut image = new_image(properties, &caller, &self.deps.config.images, &self.validator)
            .map_err(|e| FlowError::Abort(format!("Invalid image_properties: {e}")))?;
        image.id = image_id.to_owned();
        images::insert(&ctx.db, &image).await?;
        Ok(image)
    }
}

#[async_trait::async_trait]
impl Flow for LegacyImportFlow {
    async fn run(&self, ctx: &FlowContext, task: &Task) -> Result<(), FlowError> {
        let image_id = task.image_id.clone().ok_or_else(|| FlowError::Abort("The task names no image".into()))?;
        let url = task
            .input
            .as_ref()
            .and_then(|i| i.get("import_from"))
            .and_then(Value::as_str)
            .ok_or_else(|| FlowError::Abort("The task has no import_from".into()))?
            .to_owned();
        let mut image = self.image(ctx, task, &image_id).await?;
        if image.status == Status::Saving {
            // An earlier attempt died mid-upload.
            images::back_to_queued(&ctx.db, &image_id, Status::Saving).await?;
            image.status = Status::Queued;
        }
        if image.status == Status::Queued {
            let progress = Progress::new(ctx);
            // Typed failures (fetch, store) decide the retry; a body that breaks off mid-way
            // is the network's doing and is retried.
            let work = async {
                let download = self.deps.fetcher.get(&url, self.deps.cap).await?;
                let body = progress.count(download.body, download.content_length);
                let how = Upload {
                    store: None,
                    expected_size: download.content_length,
                    cap: self.deps.cap,
                    require_format_match: self.deps.config.images.require_image_format_match,
                };
                data::upload(&ctx.db, &self.deps.stores, &image, body, how).await
            };
            progress.around(ctx, task, work).await?;
        } else if image.status != Status::Active {
            return Err(FlowError::Abort(format!("The image is {}, it cannot be imported into", image.status)));
        }
        tasks::succeed(&ctx.db, &ctx.claim(task), json!({"image_id": image_id})).await?;
        Ok(())
    }

    async fn fail(&self, ctx: &FlowContext, task: &Task, reason: &str) -> glint_core::Result<()> {
        if !tasks::fail(&ctx.db, &ctx.claim(task), reason).await? {
            return Ok(());
        }
        if let Some(image_id) = &task.image_id
            && images::get(&ctx.db, image_id).await?.is_some()
        {
            glint_core::image::delete(&ctx.db, &self.deps.stores, &self.deps.staging, image_id).await?;
        }
        Ok(())
    }
}
