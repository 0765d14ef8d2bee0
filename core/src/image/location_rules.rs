//! Glance's rules for changing where an image's data is: JSON-patch `add`, `replace` and
//! `remove` on `/locations` (docs/glance-v2-api.md §5.4), applied in memory like the rest of
//! a patch, then the new URLs checked against the stores before anything is saved.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Map, Value};

use super::locations::{self, Location};
use super::patch::{Op, PatchPath};
use super::schema::Validator;
use super::{Action, HASH_ALGO, Image, repo};
use crate::config::ImagesConfig;
use crate::context::RequestContext;
use crate::store::{Stores, scrub};
use crate::{Error, Result, policy};

/// Applies one `/locations` operation to `image` in memory. New locations get id 0 and no
/// store until [`check_new_locations`] has vouched for them.
pub(super) fn apply(
    image: &mut Image,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
    ctx: &RequestContext,
    cfg: &ImagesConfig,
    validator: &Validator,
) -> Result<()> {
    let segments = path.segments();
    let depth = if op == Op::Replace { 1 } else { 2 };
    if segments.len() != depth {
        return Err(Error::BadRequest(format!("Invalid JSON pointer for this resource: '/{}'", segments.join("/"))));
    }
    if op == Op::Remove {
        policy::check_image(ctx, image, "delete_image_location")?;
        invisible_unless(cfg, "remove")?;
        image.status.next(Action::RemoveLocation)?;
        if image.locations.len() == 1 {
            return Err(Error::Forbidden("Cannot remove last location in the image.".into()));
        }
        let pos = position(&segments[1], image.locations.len(), false)
            .ok_or_else(|| Error::BadRequest("Invalid position for removing a location.".into()))?;
        image.locations.remove(pos);
        return Ok(());
    }
    let value = value.ok_or_else(|| {
        Error::BadRequest(format!("Operation \"{}\" requires a member named \"value\".", op.as_str()))
    })?;
    if op == Op::Add {
        validator.check("locations", &Value::Array(vec![value.clone()]))?;
        policy::check_image(ctx, image, "set_image_location")?;
        invisible_unless(cfg, "add")?;
        let next = image.status.next(Action::SetLocations)?;
        let validation = validation_data(image, std::slice::from_ref(&value))?;
        let pos = position(&segments[1], image.locations.len(), true)
            .ok_or_else(|| Error::BadRequest("Invalid position for adding a location.".into()))?;
        check_quota(cfg, image.locations.len() + 1)?;
        let new = parse_location(image, value)?;
        if image.locations.iter().any(|l| l.url == new.url) {
            return Err(Error::BadRequest(format!("The location {} already exists", new.url)));
        }
        image.locations.insert(pos.min(image.locations.len()), new);
        activate(image, next, validation);
        return Ok(());
    }
    validator.check("locations", &value)?;
    let Value::Array(items) = value else { unreachable!("the schema says locations is an array") };
    if items.is_empty() {
        return Err(Error::Forbidden("Cannot set locations to empty list.".into()));
    }
    policy::check_image(ctx, image, "set_image_location")?;
    invisible_unless(cfg, "update")?;
    let next = image.status.next(Action::ReplaceLocations)?;
    let validation = validation_data(image, &items)?;
    check_quota(cfg, items.len())?;
    let mut replaced: Vec<Location> = Vec::with_capacity(items.len());
    for item in items {
        let mut new = parse_location(image, item)?;
        if replaced.iter().any(|l| l.url == new.url) {
            return Err(Error::BadRequest(format!("The location {} already exists", new.url)));
        }
        // The same URL again keeps its row: only its metadata changes.
        if let Some(kept) = image.locations.iter().find(|l| l.url == new.url) {
            new.id = kept.id;
            new.store = kept.store.clone();
            if let Some(store) = &kept.store {
                new.metadata.insert("store".into(), Value::String(store.clone()));
            }
        }
        replaced.push(new);
    }
    // Glance only lets the metadata change once there are locations: swapping the URLs of
    // an image with data would change its data under the same checksum.
    let mut old: Vec<&str> = image.locations.iter().map(|l| l.url.as_str()).collect();
    let mut new: Vec<&str> = replaced.iter().map(|l| l.url.as_str()).collect();
    old.sort_unstable();
    new.sort_unstable();
    if !old.is_empty() && old != new {
        let shown: Vec<Value> =
            image.locations.iter().map(|l| serde_json::json!({"url": l.url, "metadata": l.metadata})).collect();
        return Err(Error::BadRequest(format!("Original locations is not empty: {}", Value::Array(shown))));
    }
    image.locations = replaced;
    activate(image, next, validation);
    Ok(())
}

/// Locations can be changed only where they can be seen (`show_multiple_locations`).
fn invisible_unless(cfg: &ImagesConfig, verb: &str) -> Result<()> {
    if cfg.show_multiple_locations {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("It's not allowed to {verb} locations if locations are invisible.")))
    }
}

/// Where `/locations/<segment>` points: an index, or `-` for the end (adding) or the last
/// one (removing); None when out of range. An add beyond the end appends, as Python's insert.
fn position(segment: &str, len: usize, adding: bool) -> Option<usize> {
    let pos = match segment {
        "-" if adding => len,
        "-" => len.checked_sub(1)?,
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        _ => return None,
    };
    (adding || pos < len).then_some(pos)
}

/// `image_location_quota`: 413 when an image would have more locations than allowed.
fn check_quota(cfg: &ImagesConfig, attempted: usize) -> Result<()> {
    match u64::try_from(cfg.image_location_quota) {
        Ok(maximum) if attempted as u64 > maximum => Err(Error::OverLimit(format!(
            "The limit has been exceeded on the number of allowed image locations. Attempted: {attempted}, Maximum: {maximum}"
        ))),
        _ => Ok(()),
    }
}

/// A location as the schema checked it: `url` and `metadata`, whose values may only be
/// strings, lists and objects (glance_store's rule).
fn parse_location(image: &Image, value: Value) -> Result<Location> {
    let Value::Object(mut fields) = value else { unreachable!("the schema says a location is an object") };
    let url = fields.remove("url").and_then(|u| u.as_str().map(str::to_owned)).unwrap_or_default();
    let metadata = match fields.remove("metadata") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (key, value) in &metadata {
        if !plain(value) {
            return Err(Error::BadRequest(format!(
                "The image metadata key {key} has an invalid type of {}. Only dict, list, and unicode are supported.",
                kind(value)
            )));
        }
    }
    Ok(Location { id: 0, image_id: image.id.clone(), url, store: None, metadata })
}

fn plain(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(plain),
        Value::Object(map) => map.values().all(plain),
        _ => false,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        _ => "int",
    }
}

/// The checksum and hash to record, from the operations' `validation_data` (Glance's
/// `_validate_validation_data`): values equal to the image's are fine, different ones a 409,
/// new ones only for a queued image and only well-formed.
fn validation_data(image: &Image, locations: &[Value]) -> Result<Vec<(&'static str, String)>> {
    let conflict = |text: String| Err(Error::Conflict(text));
    let mut given: Vec<(&'static str, String)> = Vec::new();
    for location in locations {
        let Some(Value::Object(data)) = location.get("validation_data") else { continue };
        for key in ["checksum", "os_hash_algo", "os_hash_value"] {
            let Some(value) = data.get(key).and_then(Value::as_str) else { continue };
            match given.iter().find(|(k, _)| *k == key) {
                Some((_, seen)) if seen != value => return conflict(format!("Conflicting values for {key}")),
                Some(_) => {}
                None => given.push((key, value.to_owned())),
            }
        }
    }
    let mut new = Vec::new();
    for (key, value) in given {
        let current = match key {
            "checksum" => &image.checksum,
            "os_hash_algo" => &image.os_hash_algo,
            _ => &image.os_hash_value,
        };
        match current.as_deref() {
            Some(current) if current == value => {}
            Some(current) if !current.is_empty() => {
                return conflict(format!("{key} is already set with a different value"));
            }
            _ => new.push((key, value)),
        }
    }
    if new.is_empty() {
        return Ok(new);
    }
    if image.status != super::Status::Queued {
        let keys: Vec<&str> = new.iter().map(|(k, _)| *k).collect();
        return conflict(format!(
            "New value(s) for {} may only be provided when image status is 'queued'",
            keys.join(", ")
        ));
    }
    let get = |key: &str| new.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
    if let Some(checksum) = get("checksum") {
        match hex::decode(checksum) {
            Err(_) => return conflict(format!("checksum ({checksum}) is not a valid hexadecimal value")),
            Ok(bytes) if bytes.len() != 16 => {
                return conflict(format!("checksum ({checksum}) is not the correct size for md5 (should be 16 bytes)"));
            }
            Ok(_) => {}
        }
    }
    let algo = get("os_hash_algo");
    if algo != Some(HASH_ALGO) {
        return conflict(format!("os_hash_algo must be {HASH_ALGO}, not {}", algo.unwrap_or("None")));
    }
    let value = get("os_hash_value").unwrap_or_default();
    match hex::decode(value) {
        Err(_) => conflict(format!("os_hash_value ({value}) is not a valid hexadecimal value")),
        Ok(bytes) if bytes.len() != 64 => {
            conflict(format!("os_hash_value ({value}) is not the correct size for {HASH_ALGO} (should be 64 bytes)"))
        }
        Ok(_) => Ok(new),
    }
}

/// A queued image given its first location becomes active, with the validation data given.
fn activate(image: &mut Image, next: super::Status, validation: Vec<(&'static str, String)>) {
    if image.status == super::Status::Queued {
        for (key, value) in validation {
            match key {
                "checksum" => image.checksum = Some(value),
                "os_hash_algo" => image.os_hash_algo = Some(value),
                _ => image.os_hash_value = Some(value),
            }
        }
    }
    image.status = next;
}

/// Checks the locations [`apply`] added to `image` (id 0) with [`check_location`]: each must
/// also hold data of the image's size (the first sets the size of an image without one),
/// where Glance would take any size. Each gets its store.
pub async fn check_new_locations(db: &impl ConnectionTrait, stores: &Stores, image: &mut Image) -> Result<()> {
    for location in image.locations.iter_mut().filter(|l| l.id == 0) {
        let (store, size) = check_location(db, stores, &image.id, &location.url).await?;
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        match image.size {
            None => image.size = Some(size),
            Some(known) if known != size => {
                tracing::info!(image = %image.id, url = %location.url, size, known, "location refused: other size");
                return Err(Error::BadRequest("Invalid location".into()));
            }
            Some(_) => {}
        }
        location.metadata.insert("store".into(), Value::String(store.clone()));
        location.store = Some(store);
    }
    Ok(())
}

/// The store and size of `url` as a new location of image `image_id`: it must pass
/// [`Stores::check_location`] and not be another image's location, whose data removing it
/// here would delete. Glance's 400 "Invalid location" otherwise; the reason is logged.
pub async fn check_location(
    db: &impl ConnectionTrait,
    stores: &Stores,
    image_id: &str,
    url: &str,
) -> Result<(String, u64)> {
    let refused = |why: String| {
        tracing::info!(image = %image_id, url = %url, reason = %why, "location refused");
        Error::BadRequest("Invalid location".into())
    };
    let found = stores.check_location(url).await.map_err(|e| refused(e.to_string()))?;
    if locations::in_use_elsewhere(db, url, image_id).await? {
        return Err(refused("another image has this location".into()));
    }
    Ok(found)
}

/// Saves a patched image (`before` as read, `after` as the patch left it): new locations
/// checked first ([`check_new_locations`]), then the rows, then the data of locations the
/// patch removed (the scrubber retries what a store fails to drop; an http store's
/// locations are only forgotten).
pub async fn save(db: &DatabaseConnection, stores: &Stores, before: &Image, mut after: Image) -> Result<Image> {
    check_new_locations(db, stores, &mut after).await?;
    let saved = repo::update(db, before, &after).await?;
    if before.locations.iter().any(|old| !after.locations.iter().any(|l| l.id == old.id))
        && let Err(err) = scrub::purge(db, stores, Some(&before.id)).await
    {
        tracing::warn!(image = %before.id, error = %err, "removing location data failed; the scrubber will retry");
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_glance() {
        assert_eq!(position("-", 2, true), Some(2));
        assert_eq!(position("5", 2, true), Some(5));
        assert_eq!(position("-", 2, false), Some(1));
        assert_eq!(position("1", 2, false), Some(1));
        assert_eq!(position("2", 2, false), None);
        assert_eq!(position("-1", 2, true), None);
        assert_eq!(position("x", 2, true), None);
        assert_eq!(position("-", 0, false), None);
    }
}
