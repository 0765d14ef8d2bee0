//! The image JSON schema clients download (and enforce), and validation of values against it.
//!
//! The schema served at /v2/schemas/image is the single source of the field rules: the same
//! document validates what POST and PATCH receive, so the client-side and server-side checks
//! cannot drift apart.

use serde_json::{Map, Value, json};

use crate::config::ImagesConfig;
use crate::{Error, Result};

const UUID_PATTERN: &str = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

/// Base fields that nobody may set (403 `Attribute 'x' is read-only.`).
pub const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "os_hash_algo",
    "os_hash_value",
    "direct_url",
    "self",
    "file",
    "schema",
    "stores",
];

/// Whether `key` is reserved for the service (403 `Attribute 'x' is reserved.`).
pub fn is_reserved(key: &str) -> bool {
    matches!(key, "location" | "deleted" | "deleted_at") || key.starts_with("os_glance")
}

/// Base (non-extra) fields of the image resource.
pub const BASE_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "container_format",
    "disk_format",
    "created_at",
    "updated_at",
    "tags",
    "direct_url",
    "min_ram",
    "min_disk",
    "self",
    "file",
    "stores",
    "schema",
    "locations",
];

/// Extra properties Glance's shipped schema-image.json declares, which Nova relies on.
fn custom_properties() -> Map<String, Value> {
    let mut props = Map::new();
    let uuid_ref = |what: &str| {
        json!({
            "type": ["null", "string"],
            "pattern": UUID_PATTERN,
            "description": format!("ID of image stored in Glance that should be used as the {what} when booting an AMI-style image."),
            "is_base": false
        })
    };
    props.insert("kernel_id".into(), uuid_ref("kernel"));
    props.insert("ramdisk_id".into(), uuid_ref("ramdisk"));
    let text = |description: &str| json!({"type": "string", "description": description, "is_base": false});
    props.insert("instance_uuid".into(), text("Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)"));
    props.insert("architecture".into(), text("Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html"));
    props.insert("os_distro".into(), text("Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html"));
    props.insert("os_version".into(), text("Operating system version as specified by the distributor."));
    props.insert("description".into(), text("A human-readable string describing this image."));
    props.insert("cinder_encryption_key_id".into(), text("Identifier in the OpenStack Key Management Service for the encryption key for the Block Storage Service to use when mounting a volume created from this image"));
    props.insert(
        "cinder_encryption_key_deletion_policy".into(),
        json!({
            "type": "string",
            "enum": ["on_image_deletion", "do_not_delete"],
            "description": "States the condition under which the Image Service will delete the object associated with the 'cinder_encryption_key_id' image property.  If this property is missing, the Image Service will take no action",
            "is_base": false
        }),
    );
    props
}

fn base_properties(cfg: &ImagesConfig) -> Map<String, Value> {
    let with_null = |values: &[String]| {
        let mut list = vec![Value::Null];
        list.extend(values.iter().cloned().map(Value::String));
        Value::Array(list)
    };
    let statuses: Vec<&str> = vec![
        "queued",
        "saving",
        "active",
        "killed",
        "deleted",
        "uploading",
        "importing",
        "pending_delete",
        "deactivated",
    ];
    let value = json!({
        "id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255},
        "status": {"type": "string", "readOnly": true, "description": "Status of the image", "enum": statuses},
        "visibility": {"type": "string", "description": "Scope of image accessibility", "enum": ["community", "public", "private", "shared"]},
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
        "checksum": {"type": ["null", "string"], "readOnly": true, "description": "md5 hash of image contents.", "maxLength": 32},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "description": "Algorithm to calculate the os_hash_value", "maxLength": 64},
        "os_hash_value": {"type": ["null", "string"], "readOnly": true, "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo", "maxLength": 128},
        "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of image file in bytes"},
        "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of image in bytes"},
        "container_format": {"type": ["null", "string"], "description": "Format of the container", "enum": with_null(&cfg.container_formats)},
        "disk_format": {"type": ["null", "string"], "description": "Format of the disk", "enum": with_null(&cfg.disk_formats)},
        "created_at": {"type": "string", "readOnly": true, "description": "Date and time of image registration"},
        "updated_at": {"type": "string", "readOnly": true, "description": "Date and time of the last image modification"},
        "tags": {"type": "array", "description": "List of strings related to the image", "items": {"type": "string", "maxLength": 255}},
        "direct_url": {"type": "string", "readOnly": true, "description": "URL to access the image file kept in external store"},
        "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
        "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
        "self": {"type": "string", "readOnly": true, "description": "An image self url"},
        "file": {"type": "string", "readOnly": true, "description": "An image file url"},
        "stores": {"type": "string", "readOnly": true, "description": "Store in which image data resides.  Only present when the operator has enabled multiple stores.  May be a comma-separated list of store identifiers."},
        "schema": {"type": "string", "readOnly": true, "description": "An image schema url"},
        "locations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "maxLength": 255},
                    "metadata": {"type": "object"},
                    "validation_data": {
                        "description": "Values to be used to populate the corresponding image properties. If the image status is not 'queued', values must exactly match those already contained in the image properties.",
                        "type": "object",
                        "writeOnly": true,
                        "additionalProperties": false,
                        "properties": {
                            "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                            "os_hash_algo": {"type": "string", "maxLength": 64},
                            "os_hash_value": {"type": "string", "maxLength": 128}
                        },
                        "required": ["os_hash_algo", "os_hash_value"]
                    }
                },
                "required": ["url", "metadata"]
            },
            "description": "A set of URLs to access the image file kept in external store"
        }
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a json! object literal is an object"),
    }
}

/// `GET /v2/schemas/image`.
pub fn image_schema(cfg: &ImagesConfig) -> Value {
    let mut properties = base_properties(cfg);
    properties.extend(custom_properties());
    json!({
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// `GET /v2/schemas/images`.
pub fn images_schema(cfg: &ImagesConfig) -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema(cfg)},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// Whether a custom property is declared nullable by the schema (emitted as `null`, not `""`).
pub fn is_nullable_property(key: &str) -> bool {
    matches!(key, "kernel_id" | "ramdisk_id")
}

/// The validator for one image's fields, built once per configuration.
#[derive(Clone, Debug)]
pub struct Validator {
    properties: Map<String, Value>,
}

impl Validator {
    /// Builds the validator from the same document `image_schema` serves.
    pub fn new(cfg: &ImagesConfig) -> Self {
        let mut properties = base_properties(cfg);
        properties.extend(custom_properties());
        Self { properties }
    }

    /// Checks `value` for field `key` against the schema (400 on any violation).
    pub fn check(&self, key: &str, value: &Value) -> Result<()> {
        let additional = json!({"type": "string"});
        let rule = self.properties.get(key).unwrap_or(&additional);
        check_rule(rule, value)
            .map_err(|why| Error::BadRequest(format!("Provided object does not match schema 'image': {why}")))
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_rule(rule: &Value, value: &Value) -> std::result::Result<(), String> {
    if let Some(types) = rule.get("type") {
        let actual = type_name(value);
        let ok = match types {
            Value::String(t) => t == actual,
            Value::Array(ts) => ts.iter().any(|t| t.as_str() == Some(actual)),
            _ => true,
        };
        if !ok {
            return Err(format!("{value} is not of type {types}"));
        }
    }
    if let Some(Value::Array(allowed)) = rule.get("enum")
        && !allowed.contains(value)
    {
        return Err(format!("{value} is not one of {}", Value::Array(allowed.clone())));
    }
    if let Value::String(s) = value {
        if let Some(max) = rule.get("maxLength").and_then(Value::as_u64)
            && s.chars().count() as u64 > max
        {
            return Err(format!("{value} is too long"));
        }
        if let Some(min) = rule.get("minLength").and_then(Value::as_u64)
            && (s.chars().count() as u64) < min
        {
            return Err(format!("{value} is too short"));
        }
        if rule.get("pattern").and_then(Value::as_str) == Some(UUID_PATTERN) && !is_uuid(s) {
            return Err(format!("{value} does not match '{UUID_PATTERN}'"));
        }
    }
    if let (Value::Array(items), Some(item_rule)) = (value, rule.get("items")) {
        for item in items {
            check_rule(item_rule, item)?;
        }
    }
    if let (Value::Object(fields), Some(Value::Object(props))) = (value, rule.get("properties")) {
        for (name, field) in fields {
            match props.get(name) {
                Some(field_rule) => check_rule(field_rule, field)?,
                None if rule.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("Additional properties are not allowed ('{name}' was unexpected)"));
                }
                None => {}
            }
        }
        if let Some(Value::Array(required)) = rule.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    return Err(format!("'{name}' is a required property"));
                }
            }
        }
    }
    Ok(())
}

/// Glance's id pattern: 8-4-4-4-12 hex digits, either case.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> Validator {
        Validator::new(&ImagesConfig::default())
    }

    #[test]
    fn extra_properties_must_be_strings() {
        assert!(validator().check("hw_disk_bus", &json!("virtio")).is_ok());
        assert!(validator().check("hw_disk_bus", &json!(1)).is_err());
        assert!(validator().check("hw_disk_bus", &Value::Null).is_err());
    }

    #[test]
    fn kernel_id_is_a_nullable_uuid() {
        assert!(validator().check("kernel_id", &Value::Null).is_ok());
        assert!(validator().check("kernel_id", &json!("1bea47ed-f6a9-463b-b423-14b9cca9ad27")).is_ok());
        assert!(validator().check("kernel_id", &json!("not-a-uuid")).is_err());
    }

    #[test]
    fn disk_format_follows_the_configured_list() {
        assert!(validator().check("disk_format", &json!("qcow2")).is_ok());
        assert!(validator().check("disk_format", &Value::Null).is_ok());
        assert!(validator().check("disk_format", &json!("qcow3")).is_err());
    }

    #[test]
    fn min_ram_must_be_an_integer() {
        assert!(validator().check("min_ram", &json!(512)).is_ok());
        assert!(validator().check("min_ram", &json!(1.5)).is_err());
        assert!(validator().check("min_ram", &json!("512")).is_err());
    }

    #[test]
    fn tags_are_short_strings() {
        assert!(validator().check("tags", &json!(["a", "b"])).is_ok());
        assert!(validator().check("tags", &json!(["a", 1])).is_err());
        assert!(validator().check("tags", &json!(["x".repeat(256)])).is_err());
    }

    #[test]
    fn uuid_pattern_accepts_both_cases_only_in_8_4_4_4_12() {
        assert!(is_uuid("1BEA47ED-f6a9-463b-b423-14b9cca9ad27"));
        assert!(!is_uuid("1bea47edf6a9463bb42314b9cca9ad27"));
        assert!(!is_uuid("1bea47ed-f6a9-463b-b423-14b9cca9ad2z"));
    }
}
