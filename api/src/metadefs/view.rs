//! Wire views of the metadef resources: Glance's JSON, with absent (never `null`) optional
//! fields, because glanceclient validates every response against the metadef schemas.

use glint_core::metadefs::body::{NamespaceInput, ObjectInput, render_property};
use glint_core::metadefs::{Association, Namespace, Object, Property, Tag};
use serde_json::{Map, Value, json};

use crate::view::timestamp;

fn put_some(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        map.insert(key.into(), json!(value));
    }
}

fn put_stamps(
    map: &mut Map<String, Value>,
    created_at: chrono::NaiveDateTime,
    updated_at: Option<chrono::NaiveDateTime>,
) {
    map.insert("created_at".into(), json!(timestamp(created_at)));
    if let Some(updated_at) = updated_at {
        map.insert("updated_at".into(), json!(timestamp(updated_at)));
    }
}

/// `/v2/metadefs/namespaces/{ns}`.
pub fn namespace_path(name: &str) -> String {
    format!("/v2/metadefs/namespaces/{name}")
}

/// A namespace's own fields and links, without nested parts.
pub fn namespace(ns: &Namespace) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("namespace".into(), json!(ns.namespace));
    put_some(&mut out, "display_name", ns.display_name.as_deref());
    put_some(&mut out, "description", ns.description.as_deref());
    out.insert("visibility".into(), json!(ns.visibility()));
    out.insert("protected".into(), json!(ns.is_protected()));
    out.insert("owner".into(), json!(ns.owner));
    put_stamps(&mut out, ns.created_at, ns.updated_at);
    out.insert("self".into(), json!(namespace_path(&ns.namespace)));
    out.insert("schema".into(), json!("/v2/schemas/metadefs/namespace"));
    out
}

/// An association with its timestamps.
pub fn association(a: &Association) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(a.name));
    put_some(&mut out, "prefix", a.prefix.as_deref());
    put_some(&mut out, "properties_target", a.properties_target.as_deref());
    put_stamps(&mut out, a.created_at, a.updated_at);
    Value::Object(out)
}

/// A property map (name → rendered fragment, no `name` inside), keys prefixed by `prefix`.
pub fn property_map<'a>(
    properties: impl IntoIterator<Item = (&'a String, &'a Value)>,
    prefix: &str,
) -> Map<String, Value> {
    properties
        .into_iter()
        .map(|(name, fragment)| {
            let rendered = fragment.as_object().map(|f| render_property(f, false)).unwrap_or_default();
            (format!("{prefix}{name}"), Value::Object(rendered))
        })
        .collect()
}

/// A full object as GET renders it (`required` and `properties` always present).
pub fn object(ns: &str, object: &Object, prefix: &str) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(object.name));
    put_some(&mut out, "description", object.description.as_deref());
    out.insert("required".into(), json!(object.required.iter().map(|r| format!("{prefix}{r}")).collect::<Vec<_>>()));
    out.insert("properties".into(), Value::Object(property_map(&object.properties, prefix)));
    put_stamps(&mut out, object.created_at, object.updated_at);
    out.insert("self".into(), json!(format!("{}/objects/{}", namespace_path(ns), object.name)));
    out.insert("schema".into(), json!("/v2/schemas/metadefs/object"));
    Value::Object(out)
}

/// The object a create or update answers: what the request said, plus timestamps and links.
pub fn object_echo(ns: &str, input: &ObjectInput, stored: &Object) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(input.name));
    put_some(&mut out, "description", input.description.as_deref());
    if let Some(required) = &input.required {
        out.insert("required".into(), json!(required));
    }
    if let Some(properties) = &input.properties {
        out.insert("properties".into(), Value::Object(property_map(properties, "")));
    }
    put_stamps(&mut out, stored.created_at, stored.updated_at);
    out.insert("self".into(), json!(format!("{}/objects/{}", namespace_path(ns), input.name)));
    out.insert("schema".into(), json!("/v2/schemas/metadefs/object"));
    Value::Object(out)
}

/// A single property: the stored fragment rendered, with `name` (as `name`).
pub fn property(property: &Property, name: &str) -> Value {
    let mut fragment = property.schema.clone();
    fragment.insert("name".into(), json!(name));
    Value::Object(render_property(&fragment, true))
}

/// A tag with its timestamps.
pub fn tag(tag: &Tag) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(tag.name));
    put_stamps(&mut out, tag.created_at, tag.updated_at);
    Value::Object(out)
}

/// `[{"name": ...}]`.
pub fn tag_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(names.into_iter().map(|n| json!({"name": n})).collect())
}

/// The namespace a create answers: its fields plus an echo of the nested parts it was given.
pub fn namespace_echo(ns: &Namespace, input: &NamespaceInput) -> Value {
    let mut out = namespace(ns);
    if !input.associations.is_empty() {
        let items = input
            .associations
            .iter()
            .map(|a| {
                let mut item = Map::new();
                item.insert("name".into(), json!(a.name));
                put_some(&mut item, "prefix", a.prefix.as_deref());
                put_some(&mut item, "properties_target", a.properties_target.as_deref());
                Value::Object(item)
            })
            .collect();
        out.insert("resource_type_associations".into(), Value::Array(items));
    }
    if !input.properties.is_empty() {
        out.insert("properties".into(), Value::Object(property_map(&input.properties, "")));
    }
    if !input.objects.is_empty() {
        let items = input
            .objects
            .iter()
            .map(|o| {
                let mut item = Map::new();
                item.insert("name".into(), json!(o.name));
                put_some(&mut item, "description", o.description.as_deref());
                if let Some(required) = &o.required {
                    item.insert("required".into(), json!(required));
                }
                if let Some(properties) = &o.properties {
                    item.insert("properties".into(), Value::Object(property_map(properties, "")));
                }
                Value::Object(item)
            })
            .collect();
        out.insert("objects".into(), Value::Array(items));
    }
    if !input.tags.is_empty() {
        out.insert("tags".into(), tag_names(input.tags.iter().map(String::as_str)));
    }
    Value::Object(out)
}
