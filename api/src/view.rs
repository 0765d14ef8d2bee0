//! Wire views: Glance's JSON for an image (base fields, flattened properties, links).

use chrono::NaiveDateTime;
use glint_core::image::{Image, schema};
use serde_json::{Map, Value, json};

/// Glance's timestamp format: UTC, whole seconds, `Z`.
pub fn timestamp(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The image JSON of `GET /v2/images/{id}` and every other image response. In multistore
/// mode it names the stores holding the data (`stores`, sorted ids, comma-joined).
pub fn image(image: &Image, multistore: bool) -> Value {
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    put("id", json!(image.id));
    put("name", json!(image.name));
    put("status", json!(image.status.as_str()));
    put("visibility", json!(image.visibility.as_str()));
    put("protected", json!(image.protected));
    put("os_hidden", json!(image.os_hidden));
    put("checksum", json!(image.checksum));
    put("os_hash_algo", json!(image.os_hash_algo));
    put("os_hash_value", json!(image.os_hash_value));
    put("owner", json!(image.owner));
    put("size", json!(image.size));
    put("virtual_size", json!(image.virtual_size));
    put("min_ram", json!(image.min_ram));
    put("min_disk", json!(image.min_disk));
    put("disk_format", json!(image.disk_format));
    put("container_format", json!(image.container_format));
    put("created_at", json!(timestamp(image.created_at)));
    put("updated_at", json!(timestamp(image.updated_at)));
    put("tags", json!(image.tags));
    put("self", json!(format!("/v2/images/{}", image.id)));
    put("file", json!(format!("/v2/images/{}/file", image.id)));
    put("schema", json!("/v2/schemas/image"));
    if multistore && !image.stores.is_empty() {
        put("stores", json!(image.stores.iter().map(String::as_str).collect::<Vec<_>>().join(",")));
    }
    for (key, value) in &image.properties {
        let value = match value {
            Some(v) => json!(v),
            None if schema::is_nullable_property(key) => Value::Null,
            None => json!(""),
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}
