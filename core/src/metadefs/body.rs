//! Request bodies of the metadefs API, checked as Glance checks them: read-only keys are a 403,
//! anything the schema does not allow a 400, in that order; property fragments are normalised
//! to the form Glance stores and renders (`default` a string, bounds integers).

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The longest name of a namespace, object, property, tag, resource type, prefix or target.
const NAME_MAX: usize = 80;

/// What `POST /v2/metadefs/namespaces` (and `PUT`) may carry.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct NamespaceInput {
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<String>,
    pub protected: Option<bool>,
    pub owner: Option<String>,
    pub associations: Vec<AssociationInput>,
    /// Property name → normalised fragment, in body order.
    pub properties: Map<String, Value>,
    pub objects: Vec<ObjectInput>,
    pub tags: Vec<String>,
}

/// An object as created or replaced.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct ObjectInput {
    pub name: String,
    pub description: Option<String>,
    pub required: Option<Vec<String>>,
    /// Property name → normalised fragment; `None` when the body had no `properties`.
    pub properties: Option<Map<String, Value>>,
}

/// An association as requested.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct AssociationInput {
    pub name: String,
    pub prefix: Option<String>,
    pub properties_target: Option<String>,
}

/// The keys a property fragment may hold, in the order Glance renders them.
pub const PROPERTY_KEYS: &[&str] = &[
    "name",
    "type",
    "title",
    "description",
    "operators",
    "default",
    "readonly",
    "minimum",
    "maximum",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "items",
    "uniqueItems",
    "minItems",
    "maxItems",
    "additionalItems",
];

/// The JSON-schema types a property may have.
pub const PROPERTY_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

const NAMESPACE_READ_ONLY: &[&str] = &["self", "schema", "created_at", "updated_at"];
const TIMESTAMPS: &[&str] = &["created_at", "updated_at"];

/// What to do with keys a nested property fragment does not know.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    Reject,
    Drop,
}

/// Parses a namespace body (create and full replacement).
pub fn namespace(body: &Value) -> Result<NamespaceInput> {
    let map = top_level(body, NAMESPACE_READ_ONLY)?;
    allow_only(
        map,
        &[
            "namespace",
            "display_name",
            "description",
            "visibility",
            "protected",
            "owner",
            "resource_type_associations",
            "properties",
            "objects",
            "tags",
        ],
    )?;
    let visibility = optional_string(map, "visibility", None)?;
    if let Some(v) = visibility.as_deref().filter(|v| !matches!(*v, "public" | "private")) {
        return Err(Error::BadRequest(format!("'{v}' is not one of ['public', 'private']")));
    }
    let associations = match map.get("resource_type_associations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| association_fields(object_of(item, "resource_type_associations")?))
            .collect::<Result<_>>()?,
        Some(_) => return Err(not_of_type("resource_type_associations", "array")),
    };
    let objects = match map.get("objects") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            items.iter().map(|item| object_fields(object_of(item, "objects")?, Unknown::Drop)).collect::<Result<_>>()?
        }
        Some(_) => return Err(not_of_type("objects", "array")),
    };
    let tags = match map.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| required_string(object_of(item, "tags")?, "name", Some(NAME_MAX)))
            .collect::<Result<_>>()?,
        Some(_) => return Err(not_of_type("tags", "array")),
    };
    let input = NamespaceInput {
        namespace: required_string(map, "namespace", Some(NAME_MAX))?,
        display_name: optional_string(map, "display_name", Some(NAME_MAX))?,
        description: optional_string(map, "description", Some(500))?,
        visibility,
        protected: optional_bool(map, "protected")?,
        owner: optional_string(map, "owner", Some(255))?,
        associations,
        properties: property_map(map.get("properties"), Unknown::Drop)?,
        objects,
        tags,
    };
    no_four_byte(body)?;
    Ok(input)
}

/// Parses an object body (create and full replacement).
pub fn object(body: &Value) -> Result<ObjectInput> {
    let map = top_level(body, NAMESPACE_READ_ONLY)?;
    allow_only(map, &["name", "description", "required", "properties"])?;
    let input = object_fields(map, Unknown::Reject)?;
    no_four_byte(body)?;
    Ok(input)
}

/// Parses a property body: its name and the normalised fragment to store (with `name`).
pub fn property(body: &Value) -> Result<(String, Map<String, Value>)> {
    let map = top_level(body, TIMESTAMPS)?;
    let name = required_string(map, "name", Some(NAME_MAX))?;
    let fragment = normalize_property(map, Unknown::Reject)?;
    no_four_byte(body)?;
    Ok((name, fragment))
}

/// Parses a tag rename body: the new name.
pub fn tag(body: &Value) -> Result<String> {
    let map = top_level(body, TIMESTAMPS)?;
    allow_only(map, &["name"])?;
    let name = required_string(map, "name", Some(NAME_MAX))?;
    no_four_byte(body)?;
    Ok(name)
}

/// Checks a tag name taken from a path (`POST .../tags/{tag}`).
pub fn tag_name(name: &str) -> Result<()> {
    if name.chars().count() > NAME_MAX {
        return Err(too_long(name));
    }
    no_four_byte(&Value::String(name.to_owned()))
}

/// Parses a bulk tags body `{"tags": [{"name": ...}]}`.
pub fn tags(body: &Value) -> Result<Vec<String>> {
    let map = top_level(body, TIMESTAMPS)?;
    allow_only(map, &["tags"])?;
    let Some(items) = map.get("tags") else { return Err(Error::BadRequest("'tags' is a required property".into())) };
    let Value::Array(items) = items else { return Err(not_of_type("tags", "array")) };
    let names = items
        .iter()
        .map(|item| {
            let item = object_of(item, "tags")?;
            allow_only(item, &["name"])?;
            required_string(item, "name", Some(NAME_MAX))
        })
        .collect::<Result<Vec<_>>>()?;
    no_four_byte(body)?;
    Ok(names)
}

/// Parses an association body `{"name", "prefix"?, "properties_target"?}`.
pub fn association(body: &Value) -> Result<AssociationInput> {
    let map = top_level(body, TIMESTAMPS)?;
    allow_only(map, &["name", "prefix", "properties_target"])?;
    association_fields(map)
}

/// A stored property fragment as Glance renders it: known keys only, in its order, `default`
/// as a string, bounds as integers; `name` only when `with_name` and stored.
pub fn render_property(stored: &Map<String, Value>, with_name: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for key in PROPERTY_KEYS {
        let Some(value) = stored.get(*key).filter(|v| !v.is_null()) else { continue };
        let rendered = match *key {
            "name" if !with_name => continue,
            "default" => Value::String(python_str(value)),
            "minimum" | "maximum" => match value.as_f64() {
                Some(n) => Value::from(n.trunc() as i64),
                None => value.clone(),
            },
            "items" => match value.as_object() {
                Some(items) => Value::Object(
                    items
                        .iter()
                        .filter(|(k, _)| matches!(k.as_str(), "type" | "enum"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                None => value.clone(),
            },
            _ => value.clone(),
        };
        out.insert((*key).to_owned(), rendered);
    }
    out
}

/// Python's `str()` of a JSON value, which is how Glance renders a property's `default`.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

// --- pieces ------------------------------------------------------------------------------------

fn top_level<'a>(body: &'a Value, read_only: &[&str]) -> Result<&'a Map<String, Value>> {
    let Value::Object(map) = body else {
        return Err(Error::BadRequest("The request body must be a JSON object.".into()));
    };
    if let Some(key) = read_only.iter().find(|k| map.contains_key(**k)) {
        return Err(Error::Forbidden(format!("Attribute '{key}' is read-only.")));
    }
    Ok(map)
}

fn object_of<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| not_of_type(&format!("an item of {what}"), "object"))
}

fn allow_only(map: &Map<String, Value>, allowed: &[&str]) -> Result<()> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(Error::BadRequest(format!("Additional properties are not allowed ('{key}' was unexpected)"))),
        None => Ok(()),
    }
}

fn not_of_type(key: &str, ty: &str) -> Error {
    Error::BadRequest(format!("Invalid value for '{key}': not of type '{ty}'"))
}

fn too_long(value: &str) -> Error {
    Error::BadRequest(format!("'{value}' is too long"))
}

fn optional_string(map: &Map<String, Value>, key: &str, max: Option<usize>) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if max.is_some_and(|m| s.chars().count() > m) => Err(too_long(s)),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(not_of_type(key, "string")),
    }
}

fn required_string(map: &Map<String, Value>, key: &str, max: Option<usize>) -> Result<String> {
    optional_string(map, key, max)?.ok_or_else(|| Error::BadRequest(format!("'{key}' is a required property")))
}

fn optional_bool(map: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(not_of_type(key, "boolean")),
    }
}

fn string_list(map: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let mut out: Vec<String> = Vec::new();
            for item in items {
                let Value::String(s) = item else { return Err(not_of_type(key, "array of strings")) };
                if out.contains(s) {
                    return Err(Error::BadRequest(format!("Invalid value for '{key}': has non-unique elements")));
                }
                out.push(s.clone());
            }
            Ok(Some(out))
        }
        Some(_) => Err(not_of_type(key, "array")),
    }
}

fn association_fields(map: &Map<String, Value>) -> Result<AssociationInput> {
    Ok(AssociationInput {
        name: required_string(map, "name", Some(NAME_MAX))?,
        prefix: optional_string(map, "prefix", Some(NAME_MAX))?,
        properties_target: optional_string(map, "properties_target", Some(NAME_MAX))?,
    })
}

fn object_fields(map: &Map<String, Value>, unknown: Unknown) -> Result<ObjectInput> {
    Ok(ObjectInput {
        name: required_string(map, "name", Some(NAME_MAX))?,
        description: optional_string(map, "description", None)?,
        required: string_list(map, "required")?,
        properties: match map.get("properties") {
            None | Some(Value::Null) => None,
            some => Some(property_map(some, unknown)?),
        },
    })
}

fn property_map(value: Option<&Value>, unknown: Unknown) -> Result<Map<String, Value>> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, fragment)| {
                let fragment = object_of(fragment, "properties")?;
                let mut normalized = normalize_property(fragment, unknown)?;
                normalized.remove("name");
                Ok((name.clone(), Value::Object(normalized)))
            })
            .collect(),
        Some(_) => Err(not_of_type("properties", "object")),
    }
}

/// Validates a property fragment against the property schema and returns the stored form.
fn normalize_property(map: &Map<String, Value>, unknown: Unknown) -> Result<Map<String, Value>> {
    if unknown == Unknown::Reject
        && let Some(key) = map.keys().find(|k| !PROPERTY_KEYS.contains(&k.as_str()) && k.as_str() != "required")
    {
        return Err(Error::BadRequest(format!("Additional properties are not allowed ('{key}' was unexpected)")));
    }
    let ty = required_string(map, "type", None)?;
    if !PROPERTY_TYPES.contains(&ty.as_str()) {
        return Err(Error::BadRequest(format!("'{ty}' is not one of {PROPERTY_TYPES:?}")));
    }
    required_string(map, "title", None)?;
    optional_string(map, "name", Some(NAME_MAX))?;
    optional_string(map, "description", None)?;
    optional_string(map, "pattern", None)?;
    string_list(map, "operators")?;
    for key in ["readonly", "uniqueItems", "additionalItems"] {
        optional_bool(map, key)?;
    }
    for key in ["minimum", "maximum"] {
        if map.get(key).is_some_and(|v| !v.is_null() && !v.is_number()) {
            return Err(not_of_type(key, "number"));
        }
    }
    for key in ["minLength", "maxLength", "minItems", "maxItems"] {
        if map.get(key).is_some_and(|v| !v.is_null() && v.as_u64().is_none()) {
            return Err(Error::BadRequest(format!("Invalid value for '{key}': must be an integer >= 0")));
        }
    }
    if let Some(values) = map.get("enum").filter(|v| !v.is_null())
        && !values.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(not_of_type("enum", "array of strings"));
    }
    if let Some(items) = map.get("items").filter(|v| !v.is_null()) {
        let items = items.as_object().ok_or_else(|| not_of_type("items", "object"))?;
        if let Some(ty) = optional_string(items, "type", None)?.filter(|t| !PROPERTY_TYPES.contains(&t.as_str())) {
            return Err(Error::BadRequest(format!("'{ty}' is not one of {PROPERTY_TYPES:?}")));
        }
        if items.get("enum").is_some_and(|v| !v.is_null() && !v.is_array()) {
            return Err(not_of_type("items.enum", "array"));
        }
    }
    Ok(render_property(map, true))
}

/// MySQL's `utf8` cannot store characters outside the Basic Multilingual Plane; Glance refuses
/// them everywhere, so a catalog moves between databases unchanged.
fn no_four_byte(value: &Value) -> Result<()> {
    let bad = |s: &str| s.chars().any(|c| c.len_utf8() == 4);
    let found = match value {
        Value::String(s) => bad(s),
        Value::Array(items) => return items.iter().try_for_each(no_four_byte),
        Value::Object(map) => {
            if map.keys().any(|k| bad(k)) {
                true
            } else {
                return map.values().try_for_each(no_four_byte);
            }
        }
        _ => false,
    };
    if found {
        Err(Error::BadRequest("Metadata definitions can't contain 4 byte unicode characters.".into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_render_as_python_strings_and_bounds_as_integers() {
        let (_, stored) =
            property(&json!({"name": "p", "title": "P", "type": "number", "default": true, "minimum": 0.5}))
                .unwrap_or_default();
        assert_eq!(
            Value::Object(stored),
            json!({"name": "p", "type": "number", "title": "P", "default": "True", "minimum": 0})
        );
    }

    #[test]
    fn read_only_keys_win_over_unknown_keys() {
        let err = object(&json!({"name": "o", "self": "x", "bogus": 1}));
        assert!(matches!(err, Err(Error::Forbidden(_))));
    }

    #[test]
    fn nested_properties_drop_unknown_keys_top_level_ones_refuse_them() {
        let ns = namespace(&json!({"namespace": "n", "properties": {"p": {"title": "P", "type": "string", "x": 1}}}));
        assert_eq!(ns.ok().map(|n| Value::Object(n.properties)), Some(json!({"p": {"type": "string", "title": "P"}})));
        assert!(property(&json!({"name": "p", "title": "P", "type": "string", "x": 1})).is_err());
    }

    #[test]
    fn emoji_are_refused() {
        assert!(matches!(tag(&json!({"name": "t\u{1F600}"})), Err(Error::BadRequest(_))));
    }
}
