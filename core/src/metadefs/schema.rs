//! The metadef JSON schemas served under `/v2/schemas/metadefs/`. glanceclient builds its
//! models from them and validates requests and responses against them, hence
//! `additionalProperties: false` and exact field types.

use serde_json::{Map, Value, json};

use super::body::PROPERTY_TYPES;

fn timestamps(map: &mut Map<String, Value>) {
    for key in ["created_at", "updated_at"] {
        map.insert(
            key.into(),
            json!({"type": "string", "readOnly": true, "description": "Date and time of the last modification", "format": "date-time"}),
        );
    }
}

fn links(map: &mut Map<String, Value>) {
    map.insert("schema".into(), json!({"type": "string", "readOnly": true}));
    map.insert("self".into(), json!({"type": "string", "readOnly": true}));
}

fn positive_definitions() -> Map<String, Value> {
    let mut defs = Map::new();
    defs.insert("positiveInteger".into(), json!({"type": "integer", "minimum": 0}));
    defs.insert(
        "positiveIntegerDefault0".into(),
        json!({"allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]}),
    );
    defs
}

/// The keys of a property fragment as the schemas describe them.
fn property_fields() -> Map<String, Value> {
    let mut types: Vec<Value> = PROPERTY_TYPES.iter().map(|t| json!(t)).collect();
    types.push(json!("null"));
    let value = json!({
        "name": {"type": "string", "maxLength": 80},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string", "enum": types},
        "required": {"$ref": "#/definitions/stringArray"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "readonly": {"type": "boolean"},
        "default": {},
        "items": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": PROPERTY_TYPES},
                "enum": {"type": "array"}
            }
        },
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": false},
        "additionalItems": {"type": "boolean"}
    });
    value.as_object().cloned().unwrap_or_default()
}

/// The definitions of the namespace and object schemas (nested property maps).
fn nested_definitions() -> Map<String, Value> {
    let mut defs = positive_definitions();
    defs.insert("stringArray".into(), json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}));
    let mut fields = property_fields();
    fields.remove("name");
    defs.insert(
        "property".into(),
        json!({
            "type": "object",
            "additionalProperties": {"type": "object", "required": ["title", "type"], "properties": fields}
        }),
    );
    defs
}

fn object_fields() -> Map<String, Value> {
    let mut map = json!({
        "name": {"type": "string", "maxLength": 80},
        "description": {"type": "string"},
        "required": {"$ref": "#/definitions/stringArray"},
        "properties": {"$ref": "#/definitions/property"}
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    links(&mut map);
    timestamps(&mut map);
    map
}

/// `GET /v2/schemas/metadefs/namespace`.
pub fn namespace() -> Value {
    let mut props = json!({
        "namespace": {"type": "string", "description": "The unique namespace text.", "maxLength": 80},
        "display_name": {"type": "string", "description": "The user friendly name for the namespace. Used by UI if available.", "maxLength": 80},
        "description": {"type": "string", "description": "Provides a user friendly description of the namespace.", "maxLength": 500},
        "visibility": {"type": "string", "description": "Scope of namespace accessibility.", "enum": ["public", "private"]},
        "protected": {"type": "boolean", "description": "If true, namespace will not be deletable."},
        "owner": {"type": "string", "description": "Owner of the namespace.", "maxLength": 255},
        "resource_type_associations": {
            "type": "array",
            "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "prefix": {"type": "string"}, "properties_target": {"type": "string"}
            }}
        },
        "properties": {"$ref": "#/definitions/property"},
        "objects": {
            "type": "array",
            "items": {"type": "object", "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "required": {"$ref": "#/definitions/stringArray"},
                "properties": {"$ref": "#/definitions/property"}
            }}
        },
        "tags": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    timestamps(&mut props);
    links(&mut props);
    json!({
        "name": "namespace",
        "properties": props,
        "additionalProperties": false,
        "definitions": nested_definitions(),
        "required": ["namespace"]
    })
}

/// `GET /v2/schemas/metadefs/object`.
pub fn object() -> Value {
    json!({
        "name": "object",
        "properties": object_fields(),
        "additionalProperties": false,
        "definitions": nested_definitions(),
        "required": ["name"]
    })
}

/// `GET /v2/schemas/metadefs/property`.
pub fn property() -> Value {
    let mut defs = positive_definitions();
    defs.insert(
        "stringArray".into(),
        json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": true}),
    );
    json!({
        "name": "property",
        "properties": property_fields(),
        "additionalProperties": false,
        "definitions": defs,
        "required": ["type", "title", "name"]
    })
}

/// `GET /v2/schemas/metadefs/tag`.
pub fn tag() -> Value {
    let mut props = json!({"name": {"type": "string", "maxLength": 80}}).as_object().cloned().unwrap_or_default();
    timestamps(&mut props);
    json!({"name": "tag", "properties": props, "additionalProperties": false, "required": ["name"]})
}

/// `GET /v2/schemas/metadefs/resource_type`: the association of a namespace with a type.
pub fn resource_type() -> Value {
    let mut props = json!({
        "name": {"type": "string", "description": "Resource type names should be aligned with Heat resource types whenever possible.", "maxLength": 80},
        "prefix": {"type": "string", "description": "Prefix applied to the namespace's properties when they are applied to this resource type.", "maxLength": 80},
        "properties_target": {"type": "string", "description": "Where the properties go on resource types that keep several sets of key/value pairs.", "maxLength": 80}
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    timestamps(&mut props);
    json!({"name": "resource_type_association", "properties": props, "additionalProperties": false, "required": ["name"]})
}

/// A list schema named `name` whose `key` holds items of `item` (without its definitions).
fn collection(name: &str, key: &str, item: Value) -> Value {
    let mut item = item;
    let definitions = item.as_object_mut().and_then(|m| m.remove("definitions"));
    let mut out = json!({
        "name": name,
        "properties": {
            key: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    });
    if let (Some(defs), Some(map)) = (definitions, out.as_object_mut()) {
        map.insert("definitions".into(), defs);
    }
    out
}

/// `GET /v2/schemas/metadefs/namespaces`.
pub fn namespaces() -> Value {
    collection("namespaces", "namespaces", namespace())
}

/// `GET /v2/schemas/metadefs/objects`.
pub fn objects() -> Value {
    collection("objects", "objects", object())
}

/// `GET /v2/schemas/metadefs/tags`.
pub fn tags() -> Value {
    collection("tags", "tags", tag())
}

/// `GET /v2/schemas/metadefs/resource_types`.
pub fn resource_types() -> Value {
    collection("resource_type_associations", "resource_type_associations", resource_type())
}

/// `GET /v2/schemas/metadefs/properties`: a map of name → property.
pub fn properties() -> Value {
    let mut item = property();
    let definitions = item.as_object_mut().and_then(|m| m.remove("definitions"));
    if let Some(map) = item.as_object_mut() {
        map.insert("required".into(), json!(["type", "title"]));
    }
    let mut out = json!({
        "name": "properties",
        "properties": {
            "properties": {"type": "object", "additionalProperties": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    });
    if let (Some(defs), Some(map)) = (definitions, out.as_object_mut()) {
        map.insert("definitions".into(), defs);
    }
    out
}
