//! Wire views: Glance's JSON for an image (base fields, flattened properties, links).

use chrono::NaiveDateTime;
use glint_core::context::RequestContext;
use glint_core::image::{Image, Status, schema};
use glint_core::policy::{self, Operation};
use serde_json::{Map, Value, json};

use crate::AppState;

/// Glance's timestamp format: UTC, whole seconds, `Z`.
pub fn timestamp(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// How image responses look for one request: what the configuration reveals about where the
/// data lives, and which properties the caller may read.
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    multistore: bool,
    show_locations: bool,
    show_direct_url: bool,
    ctx: &'a RequestContext,
}

impl<'a> ImageView<'a> {
    /// The view for `ctx`'s request under `state`'s configuration.
    pub fn new(state: &AppState, ctx: &'a RequestContext) -> Self {
        ImageView {
            multistore: state.stores.multistore(),
            show_locations: state.config.images.show_multiple_locations,
            show_direct_url: state.config.images.show_image_direct_url,
            ctx,
        }
    }

    /// The image JSON of `GET /v2/images/{id}` and every other image response. In multistore
    /// mode it names the stores holding the data (`stores`, sorted ids, comma-joined);
    /// `locations` and `direct_url` appear when their switches are on.
    pub fn render(&self, image: &Image) -> Value {
        // Glance hides a deactivated image's locations from non-admins at the database layer,
        // so everything built from them (`stores` too) disappears with them.
        let hidden = image.status == Status::Deactivated && !self.ctx.is_admin;
        let mut out = base(image);
        // Property protections: what the caller may not read is left out, as if absent.
        out.retain(|key, _| {
            !image.properties.contains_key(key) || policy::property_allowed(self.ctx, key, Operation::Read)
        });
        if self.multistore && !hidden && !image.stores.is_empty() {
            let stores: Vec<&str> = image.stores.iter().map(String::as_str).collect();
            out.insert("stores".into(), json!(stores.join(",")));
        }
        let locations = if hidden { &[][..] } else { image.locations.as_slice() };
        if self.show_locations {
            let shown = locations.iter().map(|location| {
                let mut metadata = location.metadata.clone();
                // Glint records the store of every copy; Glance names it only in multistore mode.
                if !self.multistore {
                    metadata.remove("store");
                }
                json!({"url": location.url, "metadata": metadata})
            });
            out.insert("locations".into(), Value::Array(shown.collect()));
        }
        if self.show_direct_url
            && let Some(first) = locations.first()
        {
            out.insert("direct_url".into(), json!(first.url));
        }
        Value::Object(out)
    }
}

fn base(image: &Image) -> Map<String, Value> {
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
    for (key, value) in &image.properties {
        let value = match value {
            Some(v) => json!(v),
            None if schema::is_nullable_property(key) => Value::Null,
            None => json!(""),
        };
        out.insert(key.clone(), value);
    }
    out
}
