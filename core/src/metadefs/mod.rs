//! Metadata definitions (metadefs): the catalog of namespaces that describe the metadata keys
//! (properties, objects of properties, tags) a consumer such as Horizon may put on images,
//! volumes, flavors and other resource types.
//!
//! * [`body`] validates request bodies against the metadef schemas and normalises property
//!   fragments the way Glance stores them;
//! * [`repo`] reads and writes the six `metadef_*` tables;
//! * [`schema`] holds the documents served under `/v2/schemas/metadefs/`;
//! * [`catalog`] reads and writes Glance's definition files and carries Glint's default catalog;
//! * this module holds the domain types and Glance's default metadef policy.

pub mod body;
pub mod catalog;
pub mod repo;
pub mod schema;

use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use crate::context::RequestContext;
use crate::{Error, Result};

/// A namespace: a named group of definitions, owned by a project, public or private.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    pub(crate) id: i32,
    /// The unique name (`OS::Compute::Quota`), the namespace's identifier in URLs.
    pub namespace: String,
    /// A human name.
    pub display_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// `public` or `private`; `None` for loaded definitions without one (rendered `private`).
    pub visibility: Option<String>,
    /// Blocks deletes of the namespace and its contents; `None` renders `false`.
    pub protected: Option<bool>,
    /// The owning project (`admin` for loaded definitions without an owner).
    pub owner: String,
    /// When it was created.
    pub created_at: NaiveDateTime,
    /// When it was last changed; `None` for loaded rows never changed since.
    pub updated_at: Option<NaiveDateTime>,
}

impl Namespace {
    /// The visibility as rendered: a stored NULL is `private`.
    pub fn visibility(&self) -> &str {
        self.visibility.as_deref().unwrap_or("private")
    }

    /// Whether everyone may read it.
    pub fn is_public(&self) -> bool {
        self.visibility() == "public"
    }

    /// Whether deletes in it are refused.
    pub fn is_protected(&self) -> bool {
        self.protected.unwrap_or(false)
    }
}

/// An object: a named group of properties with the names of the required ones.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Object {
    pub name: String,
    pub description: Option<String>,
    pub required: Vec<String>,
    /// Property name → stored property fragment (without `name`).
    pub properties: Map<String, Value>,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
}

/// A property of a namespace: its name and the stored JSON-schema fragment.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Property {
    pub name: String,
    /// As stored: with `name` inside only when it came through the property API.
    pub schema: Map<String, Value>,
}

/// A tag of a namespace.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Tag {
    pub name: String,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
}

/// A resource type (`OS::Glance::Image`), global to the catalog.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct ResourceType {
    pub name: String,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
}

/// The association of a namespace with a resource type: which prefix its properties take
/// there (`hw_` on images, `hw:` on flavors) and where they go (`properties_target`).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Association {
    pub name: String,
    pub prefix: Option<String>,
    pub properties_target: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
}

// --- policy ------------------------------------------------------------------------------------
//
// Glance's defaults: reads need `reader` in the owning project or a public namespace, every
// write needs `admin`. A namespace the caller may not read is reported as missing (404), never
// as forbidden, so that its existence does not leak.

/// Storage-level visibility: whether `ns` exists at all for the caller.
pub fn visible(ctx: &RequestContext, ns: &Namespace) -> bool {
    ctx.is_admin || ns.is_public() || ctx.owns(Some(&ns.owner))
}

fn readable(ctx: &RequestContext, ns: &Namespace) -> bool {
    ctx.is_admin || (ctx.has_role("reader") && (ns.is_public() || ctx.owns(Some(&ns.owner))))
}

/// The 404 of a namespace that does not exist for the caller.
pub fn namespace_not_found(name: &str) -> Error {
    Error::NotFound(format!("Metadata definition namespace={name} was not found."))
}

/// A read rule (`get_metadef_namespace`, `get_metadef_objects`, ...) on visible `ns`.
pub fn check_read(ctx: &RequestContext, ns: &Namespace) -> Result<()> {
    if readable(ctx, ns) { Ok(()) } else { Err(namespace_not_found(&ns.namespace)) }
}

/// A write rule (`modify_metadef_namespace`, `add_metadef_object`, ...) on visible `ns`:
/// admins only; 403 for callers who may read it, 404 for the others.
pub fn check_write(ctx: &RequestContext, ns: &Namespace, action: &str) -> Result<()> {
    if ctx.is_admin {
        Ok(())
    } else if readable(ctx, ns) {
        Err(Error::Forbidden(format!("You are not authorized to complete {action} action.")))
    } else {
        Err(namespace_not_found(&ns.namespace))
    }
}

/// `get_metadef_namespaces` / `list_metadef_resource_types` without a namespace: any reader.
pub fn check_list(ctx: &RequestContext) -> Result<()> {
    if ctx.is_admin || ctx.has_role("reader") {
        Ok(())
    } else {
        Err(Error::NotFound("The resource could not be found.".into()))
    }
}

/// `add_metadef_namespace`: admins only (403 for readers, 404 for callers without a role).
pub fn check_create(ctx: &RequestContext) -> Result<()> {
    if ctx.is_admin {
        Ok(())
    } else if ctx.has_role("reader") {
        Err(Error::Forbidden("You are not authorized to complete add_metadef_namespace action.".into()))
    } else {
        Err(Error::NotFound("The resource could not be found.".into()))
    }
}

/// Deletes in a protected namespace are refused (after visibility and policy).
pub fn check_unprotected(ns: &Namespace, what: &str) -> Result<()> {
    if ns.is_protected() {
        Err(Error::Forbidden(format!("{what} is protected and cannot be deleted.")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(owner: &str, visibility: Option<&str>) -> Namespace {
        Namespace {
            id: 1,
            namespace: "n".into(),
            display_name: None,
            description: None,
            visibility: visibility.map(str::to_owned),
            protected: None,
            owner: owner.into(),
            created_at: chrono::NaiveDateTime::default(),
            updated_at: None,
        }
    }

    fn ctx(project: &str, roles: &str) -> RequestContext {
        RequestContext::new(Some(project.into()), None, roles.split(',').map(str::to_owned), "req-1".into())
    }

    #[test]
    fn null_visibility_is_private() {
        assert!(!visible(&ctx("p", "reader"), &ns("admin", None)));
        assert!(visible(&ctx("p", "reader"), &ns("admin", Some("public"))));
    }

    #[test]
    fn members_may_not_write_their_own_namespaces() {
        let err = check_write(&ctx("p", "member"), &ns("p", Some("private")), "modify_metadef_namespace");
        assert!(matches!(err, Err(Error::Forbidden(_))));
    }

    #[test]
    fn callers_without_a_role_get_404_for_writes() {
        let err = check_write(&ctx("p", "observer"), &ns("p", Some("private")), "modify_metadef_namespace");
        assert!(matches!(err, Err(Error::NotFound(_))));
    }
}
