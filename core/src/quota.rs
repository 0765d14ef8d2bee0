//! Per-project quotas under Glance's unified-limits names: usage, and the 413 that refuses
//! going over a limit.

use std::collections::{HashMap, HashSet};

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Map, Value, json};

use crate::config::{Limits, QuotasConfig};
use crate::db::entity::{image, image_location, image_property};
use crate::image::Status;
use crate::image::import::IMPORTING_TO_STORES;
use crate::{Error, Result};

/// The limited resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// MiB of image data stored, every copy counted.
    ImageSizeTotal,
    /// MiB staged or being imported.
    ImageStageTotal,
    /// Images not deleted.
    ImageCountTotal,
    /// Images being uploaded, staged, imported or copied.
    ImageCountUploading,
}

impl Resource {
    const ALL: [Resource; 4] =
        [Resource::ImageSizeTotal, Resource::ImageStageTotal, Resource::ImageCountTotal, Resource::ImageCountUploading];

    fn name(self) -> &'static str {
        match self {
            Resource::ImageSizeTotal => "image_size_total",
            Resource::ImageStageTotal => "image_stage_total",
            Resource::ImageCountTotal => "image_count_total",
            Resource::ImageCountUploading => "image_count_uploading",
        }
    }

    fn limit(self, limits: &Limits) -> i64 {
        match self {
            Resource::ImageSizeTotal => limits.image_size_total,
            Resource::ImageStageTotal => limits.image_stage_total,
            Resource::ImageCountTotal => limits.image_count_total,
            Resource::ImageCountUploading => limits.image_count_uploading,
        }
    }
}

/// What a project uses of each resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    size_total_bytes: u64,
    stage_total_bytes: u64,
    count_total: i64,
    count_uploading: i64,
}

const MIB: u64 = 1 << 20;

impl Usage {
    fn of(&self, resource: Resource) -> i64 {
        match resource {
            Resource::ImageSizeTotal => mib(self.size_total_bytes),
            Resource::ImageStageTotal => mib(self.stage_total_bytes),
            Resource::ImageCountTotal => self.count_total,
            Resource::ImageCountUploading => self.count_uploading,
        }
    }
}

/// `project`'s current usage.
pub async fn usage(db: &DatabaseConnection, project: &str) -> Result<Usage> {
    let rows: Vec<(String, String, Option<i64>)> = image::Entity::find()
        .select_only()
        .columns([image::Column::Id, image::Column::Status, image::Column::Size])
        .filter(image::Column::Owner.eq(project))
        .filter(image::Column::Deleted.eq(false))
        .into_tuple()
        .all(db)
        .await?;
    let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    let mut copies: HashMap<String, u64> = HashMap::new();
    let mut copying: HashSet<String> = HashSet::new();
    for chunk in ids.chunks(500) {
        let locations: Vec<String> = image_location::Entity::find()
            .select_only()
            .column(image_location::Column::ImageId)
            .filter(image_location::Column::ImageId.is_in(chunk.iter().copied()))
            .filter(image_location::Column::Deleted.eq(false))
            .filter(image_location::Column::Status.eq("active"))
            .into_tuple()
            .all(db)
            .await?;
        for id in locations {
            *copies.entry(id).or_default() += 1;
        }
        let importing: Vec<String> = image_property::Entity::find()
            .select_only()
            .column(image_property::Column::ImageId)
            .filter(image_property::Column::ImageId.is_in(chunk.iter().copied()))
            .filter(image_property::Column::Name.eq(IMPORTING_TO_STORES))
            .filter(image_property::Column::Value.ne(""))
            .into_tuple()
            .all(db)
            .await?;
        copying.extend(importing);
    }
    let mut usage = Usage::default();
    for (id, status, size) in &rows {
        let size = size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        if status != Status::Killed.as_str() {
            usage.count_total += 1;
        }
        usage.size_total_bytes += size * copies.get(id).copied().unwrap_or(0);
        let in_flight = [Status::Saving, Status::Uploading, Status::Importing].iter().any(|s| s.as_str() == status);
        if in_flight || copying.contains(id) {
            usage.count_uploading += 1;
        }
        if status == Status::Uploading.as_str() || status == Status::Importing.as_str() || copying.contains(id) {
            usage.stage_total_bytes += size;
        }
    }
    Ok(usage)
}

/// Refuses (413) when `project` would go over a limit by adding `deltas` (MiB or counts) to
/// its usage. Does nothing when quotas are off or the caller has no project.
pub async fn enforce(
    db: &DatabaseConnection,
    cfg: &QuotasConfig,
    project: Option<&str>,
    deltas: &[(Resource, i64)],
) -> Result<()> {
    let Some(project) = project.filter(|_| cfg.enabled) else {
        return Ok(());
    };
    let limits = cfg.limits(project);
    let usage = usage(db, project).await?;
    for (resource, delta) in deltas {
        let limit = resource.limit(&limits);
        let used = usage.of(*resource);
        if limit >= 0 && used + delta > limit {
            return Err(Error::OverLimit(format!(
                "Request would exceed the {} limit: {used} of {limit} used, {delta} more requested",
                resource.name()
            )));
        }
    }
    Ok(())
}

/// Bytes as the MiB a size quota counts (rounded up).
pub fn mib(bytes: u64) -> i64 {
    i64::try_from(bytes.div_ceil(MIB)).unwrap_or(i64::MAX)
}

/// `GET /v2/info/usage` for `project`: every limit and its usage, `{}` when quotas are off.
pub async fn report(db: &DatabaseConnection, cfg: &QuotasConfig, project: Option<&str>) -> Result<Value> {
    let mut out = Map::new();
    if let Some(project) = project.filter(|_| cfg.enabled) {
        let limits = cfg.limits(project);
        let usage = usage(db, project).await?;
        for resource in Resource::ALL {
            out.insert(resource.name().into(), json!({"limit": resource.limit(&limits), "usage": usage.of(resource)}));
        }
    }
    Ok(json!({ "usage": out }))
}
