//! The rules of `POST /v2/images`: from a request body to a new queued image.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::schema::{self, Validator};
use super::{Image, Status, Visibility};
use crate::config::ImagesConfig;
use crate::context::RequestContext;
use crate::policy::Operation;
use crate::{Error, Result, policy};

/// Validates a create request in Glance's order and builds the queued image it describes.
pub fn new_image(
    body: Map<String, Value>,
    ctx: &RequestContext,
    cfg: &ImagesConfig,
    validator: &Validator,
) -> Result<Image> {
    for key in ["direct_url", "self", "file", "schema", "stores"] {
        if body.contains_key(key) {
            return Err(Error::Forbidden(format!("Attribute '{key}' is read-only.")));
        }
    }
    for (key, value) in &body {
        validator.check(key, value)?;
    }
    for key in body.keys() {
        if key.chars().count() > 255 {
            return Err(Error::BadRequest(format!("Property key is too long (max 255): '{key}'")));
        }
        if schema::is_reserved(key) || key == "locations" {
            return Err(Error::Forbidden(format!("Attribute '{key}' is reserved.")));
        }
        if schema::READ_ONLY.contains(&key.as_str()) {
            return Err(Error::Forbidden(format!("Attribute '{key}' is read-only.")));
        }
    }

    let now = crate::db::now();
    let mut image = Image {
        id: uuid::Uuid::new_v4().to_string(),
        name: None,
        disk_format: None,
        container_format: None,
        size: None,
        virtual_size: None,
        status: Status::Queued,
        visibility: Visibility::Shared,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        min_disk: 0,
        min_ram: 0,
        owner: ctx.project_id.clone(),
        protected: false,
        os_hidden: false,
        created_at: now,
        updated_at: now,
        properties: BTreeMap::new(),
        tags: BTreeSet::new(),
        stores: BTreeSet::new(),
        locations: Vec::new(),
    };
    for (key, value) in body {
        set_field(&mut image, &key, value)?;
    }
    policy::check_create(ctx, image.owner.as_deref(), image.visibility)?;
    for name in image.properties.keys() {
        policy::check_property(ctx, name, Operation::Create)?;
    }
    check_quotas(&image, cfg)?;
    Ok(image)
}

/// Sets one schema-valid field on the in-memory image (shared by create and PATCH).
pub(super) fn set_field(image: &mut Image, key: &str, value: Value) -> Result<()> {
    let string = |v: Value| v.as_str().map(str::to_owned);
    match key {
        "id" => image.id = string(value).unwrap_or_default(),
        "name" => image.name = string(value),
        "visibility" => image.visibility = value.as_str().unwrap_or_default().parse()?,
        "protected" => image.protected = value.as_bool().unwrap_or_default(),
        "os_hidden" => image.os_hidden = value.as_bool().unwrap_or_default(),
        "owner" => image.owner = string(value),
        "disk_format" => image.disk_format = string(value),
        "container_format" => image.container_format = string(value),
        "min_ram" => image.min_ram = bounded_int(key, &value)?,
        "min_disk" => image.min_disk = bounded_int(key, &value)?,
        "tags" => {
            image.tags = value
                .as_array()
                .map(|tags| tags.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
        }
        _ => {
            image.properties.insert(key.to_owned(), string(value));
        }
    }
    Ok(())
}

fn bounded_int(key: &str, value: &Value) -> Result<i32> {
    let n = value.as_i64().ok_or_else(|| Error::BadRequest(format!("Invalid value for {key}: must be an integer")))?;
    if n < 0 {
        return Err(Error::BadRequest(format!("Cannot set {key} to a negative value.")));
    }
    i32::try_from(n).map_err(|_| Error::BadRequest(format!("Value of {key} is too large (max 2147483647).")))
}

/// Longest extra property value, in bytes: what Glance's `TEXT` column holds on MySQL.
pub const MAX_PROPERTY_VALUE_BYTES: usize = 65_535;

/// The length cap of each property value (400), then the property and tag quotas (413 when
/// exceeded); negative quotas mean unlimited. Without the first two, one image could carry
/// hundreds of MiB of properties, held in memory by every request that reads it.
pub fn check_quotas(image: &Image, cfg: &ImagesConfig) -> Result<()> {
    for (key, value) in &image.properties {
        let length = value.as_deref().map_or(0, str::len);
        if length > MAX_PROPERTY_VALUE_BYTES && !key.starts_with("os_glance") {
            return Err(Error::BadRequest(format!(
                "Value of property '{key}' is too long: {length} bytes, at most {MAX_PROPERTY_VALUE_BYTES} are allowed."
            )));
        }
    }
    let counted = image.properties.keys().filter(|k| !k.starts_with("os_glance")).count();
    if cfg.image_property_quota >= 0 && counted as i64 > cfg.image_property_quota {
        return Err(Error::OverLimit(format!(
            "Attempted: {counted}, Maximum: {}. Maximum number of image properties exceeded.",
            cfg.image_property_quota
        )));
    }
    let bytes: usize = image
        .properties
        .iter()
        .filter(|(k, _)| !k.starts_with("os_glance"))
        .map(|(k, v)| k.len() + v.as_deref().map_or(0, str::len))
        .sum();
    if cfg.image_property_size_quota >= 0 && bytes as i64 > cfg.image_property_size_quota {
        return Err(Error::OverLimit(format!(
            "Attempted: {bytes}, Maximum: {}. Maximum size of image properties (bytes of names and values) exceeded.",
            cfg.image_property_size_quota
        )));
    }
    if cfg.image_tag_quota >= 0 && image.tags.len() as i64 > cfg.image_tag_quota {
        return Err(Error::OverLimit(format!(
            "Attempted: {}, Maximum: {}. Maximum number of tags exceeded.",
            image.tags.len(),
            cfg.image_tag_quota
        )));
    }
    Ok(())
}
