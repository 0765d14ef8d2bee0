//! The rules of `PATCH /v2/images/{id}`: JSON-patch operations applied atomically in memory.

use serde_json::Value;

use super::create::{check_quotas, set_field};
use super::schema::{self, Validator};
use super::{Image, Visibility};
use crate::config::ImagesConfig;
use crate::context::RequestContext;
use crate::policy::Operation;
use crate::{Error, Result, policy};

/// The three operations Glance supports (`test`, `move` and `copy` are refused when parsing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or set.
    Add,
    /// Delete an extra property.
    Remove,
    /// Set an existing member.
    Replace,
}

impl Op {
    /// Parses an operation name; anything but the three is a 400.
    pub fn parse(name: &str) -> Result<Op> {
        match name {
            "add" => Ok(Op::Add),
            "remove" => Ok(Op::Remove),
            "replace" => Ok(Op::Replace),
            other => Err(Error::BadRequest(format!("Invalid operation: '{other}'"))),
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
            Op::Replace => "replace",
        }
    }
}

/// A decoded JSON pointer: its unescaped, trimmed segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchPath(Vec<String>);

impl PatchPath {
    /// Parses a JSON pointer under Glance's rules (leading `/`, no empty segments, `~0`/`~1`).
    pub fn parse(pointer: &str) -> Result<PatchPath> {
        let invalid = || Error::BadRequest(format!("Invalid JSON pointer for this resource: '{pointer}'"));
        let rest = pointer.strip_prefix('/').ok_or_else(invalid)?;
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw.is_empty() {
                return Err(invalid());
            }
            let mut decoded = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => decoded.push('~'),
                        Some('1') => decoded.push('/'),
                        _ => return Err(invalid()),
                    }
                } else {
                    decoded.push(c);
                }
            }
            segments.push(decoded.trim().to_owned());
        }
        Ok(PatchPath(segments))
    }

    fn root(&self) -> &str {
        &self.0[0]
    }

    /// The decoded segments, root first.
    pub(super) fn segments(&self) -> &[String] {
        &self.0
    }
}

/// One parsed JSON-patch operation, whatever the dialect it came in.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchOp {
    /// What to do.
    pub op: Op,
    /// Where.
    pub path: PatchPath,
    /// The new value (present for add and replace).
    pub value: Option<Value>,
}

/// Which media type the patch came in; v2.0 refuses `add` of something that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `application/openstack-images-v2.0-json-patch` (Tempest).
    V20,
    /// `application/openstack-images-v2.1-json-patch` (glanceclient, openstacksdk, Nova).
    V21,
}

/// Applies `ops` in order to `image`; any failure leaves the caller's copy to be discarded.
pub fn apply_patch(
    image: &mut Image,
    ops: Vec<PatchOp>,
    dialect: Dialect,
    ctx: &RequestContext,
    cfg: &ImagesConfig,
    validator: &Validator,
) -> Result<()> {
    for PatchOp { op, path, value } in ops {
        let root = path.root().to_owned();
        if root == "id" || schema::READ_ONLY.contains(&root.as_str()) {
            return Err(Error::Forbidden(format!("Attribute '{root}' is read-only.")));
        }
        if schema::is_reserved(&root) {
            return Err(Error::Forbidden(format!("Attribute '{root}' is reserved.")));
        }
        if root == "locations" {
            super::location_rules::apply(image, op, &path, value, ctx, cfg, validator)?;
            continue;
        }
        if path.0.len() != 1 {
            return Err(Error::BadRequest(format!("Invalid JSON pointer for this resource: '/{}'", path.0.join("/"))));
        }
        if root.chars().count() > 255 {
            return Err(Error::BadRequest(format!("Property key is too long (max 255): '{root}'")));
        }
        let value = match (op, value) {
            (Op::Remove, _) => Value::Null,
            (_, Some(value)) => value,
            (_, None) => {
                return Err(Error::BadRequest(format!(
                    "Operation \"{}\" requires a member named \"value\".",
                    op.as_str()
                )));
            }
        };
        if op != Op::Remove {
            validator.check(&root, &value)?;
        }
        policy::check_image(ctx, image, "modify_image")?;

        let is_base = schema::BASE_FIELDS.contains(&root.as_str());
        // A property the caller may not read is one it cannot know exists (Glance's proxy).
        let present = image.properties.contains_key(&root) && policy::property_allowed(ctx, &root, Operation::Read);
        match (op, is_base) {
            (Op::Remove, true) => {
                return Err(Error::Forbidden(format!("Property {root} may not be removed.")));
            }
            (Op::Remove, false) => {
                if !present {
                    return Err(Error::Conflict(format!("Property {root} does not exist.")));
                }
                policy::check_property(ctx, &root, Operation::Delete)?;
                image.properties.remove(&root);
            }
            (Op::Add, true) if dialect == Dialect::V20 => {
                return Err(Error::Conflict(format!("Property {root} already present.")));
            }
            (Op::Add | Op::Replace, true) => set_base(image, &root, value, ctx)?,
            (Op::Add, false) => {
                if dialect == Dialect::V20 && present {
                    return Err(Error::Conflict(format!("Property {root} already present.")));
                }
                policy::check_property(ctx, &root, if present { Operation::Update } else { Operation::Create })?;
                set_field(image, &root, value)?;
            }
            (Op::Replace, false) => {
                if !present {
                    return Err(Error::Conflict(format!("Property {root} does not exist.")));
                }
                policy::check_property(ctx, &root, Operation::Update)?;
                set_field(image, &root, value)?;
            }
        }
    }
    check_quotas(image, cfg)
}

fn set_base(image: &mut Image, key: &str, value: Value, ctx: &RequestContext) -> Result<()> {
    match key {
        "owner" => policy::check_owner_change(ctx)?,
        "visibility" => {
            let visibility: Visibility = value.as_str().unwrap_or_default().parse()?;
            policy::check_visibility(ctx, &policy::image_target(image), visibility)?;
        }
        "disk_format" | "container_format" if !image.status.formats_mutable() => {
            return Err(Error::Forbidden(format!("Attribute {key} can be only replaced for a queued image.")));
        }
        _ => {}
    }
    set_field(image, key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_unescapes_and_trims() {
        assert_eq!(PatchPath::parse("/a~1b~0c").ok(), Some(PatchPath(vec!["a/b~c".into()])));
        assert_eq!(PatchPath::parse("/ name ").ok(), Some(PatchPath(vec!["name".into()])));
    }

    #[test]
    fn pointer_rejects_malformed_forms() {
        for bad in ["name", "/", "//name", "/name/", "/a~2", "/a~"] {
            assert!(PatchPath::parse(bad).is_err(), "{bad}");
        }
    }
}
