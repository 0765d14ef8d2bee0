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
use crate::policy::Target;
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
// The policy's rules (by default Glance's: reads need `reader` in the owning project or a public
// namespace, every write needs `admin`). A namespace the caller may not read is reported as
// missing (404), never as forbidden, so that its existence does not leak.

/// Storage-level visibility: whether `ns` exists at all for the caller.
pub fn visible(ctx: &RequestContext, ns: &Namespace) -> bool {
    ctx.is_admin || ns.is_public() || ctx.owns(Some(&ns.owner))
}

/// The 404 of a namespace that does not exist for the caller.
pub fn namespace_not_found(name: &str) -> Error {
    Error::NotFound(format!("Metadata definition namespace={name} was not found."))
}

/// Rule `rule` (`get_metadef_objects`, `modify_metadef_namespace`, ...) on visible `ns`, as
/// Glance enforces it: 403 naming the rule, or 404 when the caller may not even
/// `get_metadef_namespace` it.
pub fn check(ctx: &RequestContext, ns: &Namespace, rule: &str) -> Result<()> {
    let visibility = if ns.is_public() { "public" } else { "private" };
    let target = Target::default().with("project_id", Some(&ns.owner)).with("visibility", Some(visibility));
    enforce(ctx, rule, &target, || namespace_not_found(&ns.namespace))
}

/// A rule about no particular namespace (`get_metadef_namespaces`, `add_metadef_namespace`,
/// `list_metadef_resource_types`): the target is the caller's own project.
pub fn check_own(ctx: &RequestContext, rule: &str) -> Result<()> {
    let target = Target::default().with("project_id", ctx.project_id.as_ref());
    enforce(ctx, rule, &target, || Error::NotFound("The resource could not be found.".into()))
}

fn enforce(ctx: &RequestContext, rule: &str, target: &Target, not_found: impl Fn() -> Error) -> Result<()> {
    if ctx.policy.check(rule, ctx, target) {
        Ok(())
    } else if rule == "get_metadef_namespace" || !ctx.policy.check("get_metadef_namespace", ctx, target) {
        Err(not_found())
    } else {
        Err(Error::Forbidden(format!("You are not authorized to complete {rule} action.")))
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
        let err = check(&ctx("p", "member"), &ns("p", Some("private")), "modify_metadef_namespace");
        assert!(matches!(err, Err(Error::Forbidden(_))));
    }

    #[test]
    fn callers_without_a_role_get_404_for_writes() {
        let err = check(&ctx("p", "observer"), &ns("p", Some("private")), "modify_metadef_namespace");
        assert!(matches!(err, Err(Error::NotFound(_))));
    }
}
