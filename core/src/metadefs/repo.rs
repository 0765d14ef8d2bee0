//! The metadef repository: the six `metadef_*` tables behind the domain types.
//!
//! Every change that touches more than one row runs in one transaction, so a failed nested
//! create or bulk tag replacement leaves nothing behind. Unique violations become 409s with
//! Glance's messages. Lists that page or sort (namespaces, tags) are ordered in memory: a
//! catalog holds dozens of namespaces, and sorting here gives the same order on every database.

use std::cmp::Ordering;
use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::{Map, Value};

use super::body::{AssociationInput, NamespaceInput, ObjectInput};
use super::{Association, Namespace, Object, Property, ResourceType, Tag, namespace_not_found, visible};
use crate::context::RequestContext;
use crate::db::entity::{
    metadef_namespace as ns_row, metadef_namespace_resource_type as assoc_row, metadef_object as object_row,
    metadef_property as property_row, metadef_resource_type as type_row, metadef_tag as tag_row,
};
use crate::db::now;
use crate::list::SortDir;
use crate::{Error, Result};

// --- conversions -------------------------------------------------------------------------------

pub(crate) fn namespace_of(row: ns_row::Model) -> Namespace {
    Namespace {
        id: row.id,
        namespace: row.namespace,
        display_name: row.display_name,
        description: row.description,
        visibility: row.visibility,
        protected: row.protected,
        owner: row.owner,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

pub(crate) fn json_map(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(crate) fn object_of(row: object_row::Model) -> Object {
    Object {
        name: row.name,
        description: row.description,
        required: row.required.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default(),
        properties: json_map(&row.json_schema),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn tag_of(row: tag_row::Model) -> Tag {
    Tag { name: row.name, created_at: row.created_at, updated_at: row.updated_at }
}

/// Maps a unique violation to a 409 saying `conflict`, anything else to a database error.
fn unique(err: DbErr, conflict: impl FnOnce() -> String) -> Error {
    match err.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::Conflict(conflict()),
        _ => err.into(),
    }
}

fn object_exists(name: &str, ns: &str) -> String {
    format!("A metadata definition object with name={name} already exists in namespace={ns}.")
}

fn property_exists(name: &str, ns: &str) -> String {
    format!("A metadata definition property with name={name} already exists in namespace={ns}.")
}

fn tag_exists(name: &str, ns: &str) -> String {
    format!(
        "A metadata tag with name={name} already exists in namespace={ns}. (Please note that metadata tag names are case insensitive)."
    )
}

// --- namespaces --------------------------------------------------------------------------------

/// The namespace called `name`, if any (whoever may see it).
pub async fn find(db: &impl ConnectionTrait, name: &str) -> Result<Option<Namespace>> {
    Ok(ns_row::Entity::find().filter(ns_row::Column::Namespace.eq(name)).one(db).await?.map(namespace_of))
}

/// The namespace called `name` if the caller may see it, else 404 (invisible = missing).
pub async fn find_visible(db: &impl ConnectionTrait, ctx: &RequestContext, name: &str) -> Result<Namespace> {
    find(db, name).await?.filter(|ns| visible(ctx, ns)).ok_or_else(|| namespace_not_found(name))
}

/// The columns a namespace list may be sorted by.
pub const SORT_KEYS: &[&str] =
    &["namespace", "display_name", "description", "visibility", "protected", "owner", "created_at", "updated_at", "id"];

/// What `GET /v2/metadefs/namespaces` asks for, already validated.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Only `public` or only `private` ones (on top of what the caller may see).
    pub visibility: Option<String>,
    /// Only namespaces associated with any of these resource types.
    pub resource_types: Option<Vec<String>>,
    /// One of [`SORT_KEYS`]; `created_at`, then `id`, break ties.
    pub sort_key: String,
    /// The direction of the sort key and of the tie-breakers.
    pub dir: SortDir,
    /// Page size.
    pub limit: u64,
    /// The name of the last namespace of the previous page.
    pub marker: Option<String>,
}

fn compare(a: &Namespace, b: &Namespace, key: &str) -> Ordering {
    match key {
        "namespace" => a.namespace.cmp(&b.namespace),
        "display_name" => a.display_name.cmp(&b.display_name),
        "description" => a.description.cmp(&b.description),
        "visibility" => a.visibility().cmp(b.visibility()),
        "protected" => a.is_protected().cmp(&b.is_protected()),
        "owner" => a.owner.cmp(&b.owner),
        "updated_at" => a.updated_at.cmp(&b.updated_at),
        "id" => a.id.cmp(&b.id),
        _ => a.created_at.cmp(&b.created_at),
    }
}

/// One page of the namespaces visible to the caller, each with its associations.
pub async fn list(
    db: &impl ConnectionTrait,
    ctx: &RequestContext,
    query: &ListQuery,
) -> Result<Vec<(Namespace, Vec<Association>)>> {
    let mut all: Vec<Namespace> = ns_row::Entity::find().all(db).await?.into_iter().map(namespace_of).collect();
    let marker = match &query.marker {
        None => None,
        Some(name) => match all.iter().find(|ns| &ns.namespace == name) {
            None => return Err(namespace_not_found(name)),
            Some(ns) if !visible(ctx, ns) => {
                return Err(Error::Forbidden(format!("Forbidden to get metadata definition namespace={name}")));
            }
            Some(ns) => Some(ns.clone()),
        },
    };
    let mut associations = all_associations(db).await?;
    all.retain(|ns| visible(ctx, ns) && query.visibility.as_deref().is_none_or(|v| ns.visibility() == v));
    if let Some(types) = &query.resource_types {
        all.retain(|ns| associations.get(&ns.id).is_some_and(|list| list.iter().any(|a| types.contains(&a.name))));
    }
    let order = |a: &Namespace, b: &Namespace| {
        let ordering =
            compare(a, b, &query.sort_key).then_with(|| a.created_at.cmp(&b.created_at)).then_with(|| a.id.cmp(&b.id));
        query.dir.apply(ordering)
    };
    all.sort_by(order);
    let start = marker.map_or(0, |m| all.iter().position(|ns| order(ns, &m) == Ordering::Greater).unwrap_or(all.len()));
    Ok(all
        .into_iter()
        .skip(start)
        .take(query.limit as usize)
        .map(|ns| {
            let list = associations.remove(&ns.id).unwrap_or_default();
            (ns, list)
        })
        .collect())
}

/// Creates a namespace owned by `owner` with everything nested in `input`, in one transaction.
pub async fn create_namespace(db: &DatabaseConnection, input: &NamespaceInput, owner: &str) -> Result<Namespace> {
    let at = now();
    let row = ns_row::ActiveModel {
        namespace: Set(input.namespace.clone()),
        display_name: Set(input.display_name.clone()),
        description: Set(input.description.clone()),
        visibility: Set(Some(input.visibility.clone().unwrap_or_else(|| "private".into()))),
        protected: Set(Some(input.protected.unwrap_or(false))),
        owner: Set(owner.to_owned()),
        created_at: Set(at),
        updated_at: Set(Some(at)),
        ..Default::default()
    };
    let ns = db
        .transaction_async(async |txn| -> Result<Namespace> {
            ns_row::Entity::insert(row)
                .exec_without_returning(txn)
                .await
                .map_err(|e| unique(e, || format!("Namespace {} already exists", input.namespace)))?;
            let ns = find(txn, &input.namespace).await?.ok_or_else(|| namespace_not_found(&input.namespace))?;
            for association in &input.associations {
                associate_in(txn, &ns, association).await?;
            }
            for (name, fragment) in &input.properties {
                insert_property(txn, &ns, name, fragment.as_object().cloned().unwrap_or_default()).await?;
            }
            for object in &input.objects {
                insert_object(txn, &ns, object).await?;
            }
            for tag in &input.tags {
                insert_tag(txn, &ns, tag).await?;
            }
            Ok(ns)
        })
        .await?;
    Ok(ns)
}

/// Replaces the namespace's own fields (absent ones reset: private, unprotected, `owner`).
pub async fn update_namespace(
    db: &impl ConnectionTrait,
    ns: &Namespace,
    input: &NamespaceInput,
    owner: &str,
) -> Result<Namespace> {
    ns_row::Entity::update_many()
        .col_expr(ns_row::Column::Namespace, Expr::value(input.namespace.clone()))
        .col_expr(ns_row::Column::DisplayName, Expr::value(input.display_name.clone()))
        .col_expr(ns_row::Column::Description, Expr::value(input.description.clone()))
        .col_expr(ns_row::Column::Visibility, Expr::value(input.visibility.clone().unwrap_or_else(|| "private".into())))
        .col_expr(ns_row::Column::Protected, Expr::value(input.protected.unwrap_or(false)))
        .col_expr(ns_row::Column::Owner, Expr::value(owner.to_owned()))
        .col_expr(ns_row::Column::UpdatedAt, Expr::value(now()))
        .filter(ns_row::Column::Id.eq(ns.id))
        .exec(db)
        .await
        .map_err(|e| unique(e, || format!("Namespace {} already exists", input.namespace)))?;
    find(db, &input.namespace).await?.ok_or_else(|| namespace_not_found(&input.namespace))
}

/// Deletes the namespace and everything in it (its resource types stay), in one transaction.
pub async fn delete_namespace(db: &DatabaseConnection, ns: &Namespace) -> Result<()> {
    db.transaction_async(async |txn| -> Result<()> {
        delete_tags(txn, ns).await?;
        delete_objects(txn, ns).await?;
        delete_properties(txn, ns).await?;
        assoc_row::Entity::delete_many().filter(assoc_row::Column::NamespaceId.eq(ns.id)).exec(txn).await?;
        ns_row::Entity::delete_many().filter(ns_row::Column::Id.eq(ns.id)).exec(txn).await?;
        Ok(())
    })
    .await?;
    Ok(())
}

// --- objects -----------------------------------------------------------------------------------

/// The objects of `ns`, in creation order.
pub async fn objects(db: &impl ConnectionTrait, ns: &Namespace) -> Result<Vec<Object>> {
    let rows = object_row::Entity::find()
        .filter(object_row::Column::NamespaceId.eq(ns.id))
        .order_by_asc(object_row::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(object_of).collect())
}

async fn object_row_named(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<object_row::Model> {
    object_row::Entity::find()
        .filter(object_row::Column::NamespaceId.eq(ns.id))
        .filter(object_row::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Could not find metadata object {name}")))
}

/// Object `name` of `ns`, or 404.
pub async fn object(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<Object> {
    Ok(object_of(object_row_named(db, ns, name).await?))
}

fn required_text(input: &ObjectInput) -> Option<String> {
    input.required.as_ref().map(|r| Value::from(r.clone()).to_string())
}

fn properties_text(input: &ObjectInput) -> String {
    Value::Object(input.properties.clone().unwrap_or_default()).to_string()
}

async fn insert_object(db: &impl ConnectionTrait, ns: &Namespace, input: &ObjectInput) -> Result<()> {
    let at = now();
    let row = object_row::ActiveModel {
        namespace_id: Set(ns.id),
        name: Set(input.name.clone()),
        description: Set(input.description.clone()),
        required: Set(required_text(input)),
        json_schema: Set(properties_text(input)),
        created_at: Set(at),
        updated_at: Set(Some(at)),
        ..Default::default()
    };
    object_row::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .map_err(|e| unique(e, || object_exists(&input.name, &ns.namespace)))?;
    Ok(())
}

/// Creates an object in `ns`; 409 if the name is taken.
pub async fn create_object(db: &impl ConnectionTrait, ns: &Namespace, input: &ObjectInput) -> Result<Object> {
    insert_object(db, ns, input).await?;
    object(db, ns, &input.name).await
}

/// Replaces object `name` (absent fields cleared); renaming onto a taken name is a 409.
pub async fn update_object(
    db: &impl ConnectionTrait,
    ns: &Namespace,
    name: &str,
    input: &ObjectInput,
) -> Result<Object> {
    let row = object_row_named(db, ns, name).await?;
    object_row::Entity::update_many()
        .col_expr(object_row::Column::Name, Expr::value(input.name.clone()))
        .col_expr(object_row::Column::Description, Expr::value(input.description.clone()))
        .col_expr(object_row::Column::Required, Expr::value(required_text(input)))
        .col_expr(object_row::Column::JsonSchema, Expr::value(properties_text(input)))
        .col_expr(object_row::Column::UpdatedAt, Expr::value(now()))
        .filter(object_row::Column::Id.eq(row.id))
        .exec(db)
        .await
        .map_err(|e| unique(e, || object_exists(&input.name, &ns.namespace)))?;
    object(db, ns, &input.name).await
}

/// Deletes object `name`, or 404.
pub async fn delete_object(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<()> {
    let row = object_row_named(db, ns, name).await?;
    object_row::Entity::delete_by_id(row.id).exec(db).await?;
    Ok(())
}

/// Deletes every object of `ns`.
pub async fn delete_objects(db: &impl ConnectionTrait, ns: &Namespace) -> Result<()> {
    object_row::Entity::delete_many().filter(object_row::Column::NamespaceId.eq(ns.id)).exec(db).await?;
    Ok(())
}

// --- properties --------------------------------------------------------------------------------

/// The properties of `ns`, in creation order.
pub async fn properties(db: &impl ConnectionTrait, ns: &Namespace) -> Result<Vec<Property>> {
    let rows = property_row::Entity::find()
        .filter(property_row::Column::NamespaceId.eq(ns.id))
        .order_by_asc(property_row::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| Property { schema: json_map(&row.json_schema), name: row.name }).collect())
}

async fn property_row_named(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<property_row::Model> {
    property_row::Entity::find()
        .filter(property_row::Column::NamespaceId.eq(ns.id))
        .filter(property_row::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Could not find property {name}")))
}

/// Property `name` of `ns`, or 404.
pub async fn property(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<Property> {
    let row = property_row_named(db, ns, name).await?;
    Ok(Property { schema: json_map(&row.json_schema), name: row.name })
}

async fn insert_property(
    db: &impl ConnectionTrait,
    ns: &Namespace,
    name: &str,
    fragment: Map<String, Value>,
) -> Result<()> {
    let at = now();
    let row = property_row::ActiveModel {
        namespace_id: Set(ns.id),
        name: Set(name.to_owned()),
        json_schema: Set(Value::Object(fragment).to_string()),
        created_at: Set(at),
        updated_at: Set(Some(at)),
        ..Default::default()
    };
    property_row::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .map_err(|e| unique(e, || property_exists(name, &ns.namespace)))?;
    Ok(())
}

/// Creates property `name` in `ns` with the stored `fragment`; 409 if the name is taken.
pub async fn create_property(
    db: &impl ConnectionTrait,
    ns: &Namespace,
    name: &str,
    fragment: Map<String, Value>,
) -> Result<Property> {
    insert_property(db, ns, name, fragment).await?;
    property(db, ns, name).await
}

/// Replaces property `old` by `name` with `fragment`; renaming onto a taken name is a 409.
pub async fn update_property(
    db: &impl ConnectionTrait,
    ns: &Namespace,
    old: &str,
    name: &str,
    fragment: Map<String, Value>,
) -> Result<Property> {
    let row = property_row_named(db, ns, old).await?;
    property_row::Entity::update_many()
        .col_expr(property_row::Column::Name, Expr::value(name.to_owned()))
        .col_expr(property_row::Column::JsonSchema, Expr::value(Value::Object(fragment).to_string()))
        .col_expr(property_row::Column::UpdatedAt, Expr::value(now()))
        .filter(property_row::Column::Id.eq(row.id))
        .exec(db)
        .await
        .map_err(|e| unique(e, || property_exists(name, &ns.namespace)))?;
    property(db, ns, name).await
}

/// Deletes property `name`, or 404.
pub async fn delete_property(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<()> {
    let row = property_row_named(db, ns, name).await?;
    property_row::Entity::delete_by_id(row.id).exec(db).await?;
    Ok(())
}

/// Deletes every property of `ns`.
pub async fn delete_properties(db: &impl ConnectionTrait, ns: &Namespace) -> Result<()> {
    property_row::Entity::delete_many().filter(property_row::Column::NamespaceId.eq(ns.id)).exec(db).await?;
    Ok(())
}

// --- tags --------------------------------------------------------------------------------------

/// The columns a tag list may be sorted by.
pub const TAG_SORT_KEYS: &[&str] = &["name", "created_at", "updated_at", "id"];

/// What `GET .../tags` asks for, already validated.
#[derive(Clone, Debug)]
pub struct TagQuery {
    /// One of [`TAG_SORT_KEYS`]; `created_at`, then `id`, break ties.
    pub sort_key: String,
    /// The direction of the sort key and of the tie-breakers.
    pub dir: SortDir,
    /// Page size; all when `None`.
    pub limit: Option<u64>,
    /// The name of the last tag of the previous page (unknown: 404).
    pub marker: Option<String>,
}

/// The tags of `ns` as `query` orders and pages them.
pub async fn tags(db: &impl ConnectionTrait, ns: &Namespace, query: &TagQuery) -> Result<Vec<Tag>> {
    let mut rows = tag_row::Entity::find().filter(tag_row::Column::NamespaceId.eq(ns.id)).all(db).await?;
    let order = |a: &tag_row::Model, b: &tag_row::Model| {
        let ordering = match query.sort_key.as_str() {
            "name" => a.name.cmp(&b.name),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "id" => a.id.cmp(&b.id),
            _ => Ordering::Equal,
        }
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id));
        query.dir.apply(ordering)
    };
    rows.sort_by(order);
    let start = match &query.marker {
        None => 0,
        Some(name) => {
            let marker = rows
                .iter()
                .find(|t| &t.name == name)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("Metadata tag {name} not found")))?;
            rows.iter().position(|t| order(t, &marker) == Ordering::Greater).unwrap_or(rows.len())
        }
    };
    let limit = query.limit.map_or(usize::MAX, |l| l as usize);
    Ok(rows.into_iter().skip(start).take(limit).map(tag_of).collect())
}

async fn tag_row_named(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<tag_row::Model> {
    tag_row::Entity::find()
        .filter(tag_row::Column::NamespaceId.eq(ns.id))
        .filter(tag_row::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Could not find metadata tag {name}")))
}

/// Tag `name` of `ns`, or 404.
pub async fn tag(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<Tag> {
    Ok(tag_of(tag_row_named(db, ns, name).await?))
}

async fn insert_tag(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<()> {
    let at = now();
    let row = tag_row::ActiveModel {
        namespace_id: Set(ns.id),
        name: Set(name.to_owned()),
        created_at: Set(at),
        updated_at: Set(Some(at)),
        ..Default::default()
    };
    tag_row::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .map_err(|e| unique(e, || tag_exists(name, &ns.namespace)))?;
    Ok(())
}

/// Creates tag `name` in `ns`; 409 if it exists.
pub async fn create_tag(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<Tag> {
    insert_tag(db, ns, name).await?;
    tag(db, ns, name).await
}

/// Bulk create: replaces every tag of `ns` by `names` (or adds them when `append`), all or
/// nothing; an empty list changes nothing.
pub async fn replace_tags(db: &DatabaseConnection, ns: &Namespace, names: &[String], append: bool) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    db.transaction_async(async |txn| -> Result<()> {
        if !append {
            delete_tags(txn, ns).await?;
        }
        for name in names {
            insert_tag(txn, ns, name).await?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// Renames tag `old` to `name`; 409 if that is taken.
pub async fn rename_tag(db: &impl ConnectionTrait, ns: &Namespace, old: &str, name: &str) -> Result<Tag> {
    let row = tag_row_named(db, ns, old).await?;
    tag_row::Entity::update_many()
        .col_expr(tag_row::Column::Name, Expr::value(name.to_owned()))
        .col_expr(tag_row::Column::UpdatedAt, Expr::value(now()))
        .filter(tag_row::Column::Id.eq(row.id))
        .exec(db)
        .await
        .map_err(|e| unique(e, || tag_exists(name, &ns.namespace)))?;
    tag(db, ns, name).await
}

/// Deletes tag `name`, or 404.
pub async fn delete_tag(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<()> {
    let row = tag_row_named(db, ns, name).await?;
    tag_row::Entity::delete_by_id(row.id).exec(db).await?;
    Ok(())
}

/// Deletes every tag of `ns`.
pub async fn delete_tags(db: &impl ConnectionTrait, ns: &Namespace) -> Result<()> {
    tag_row::Entity::delete_many().filter(tag_row::Column::NamespaceId.eq(ns.id)).exec(db).await?;
    Ok(())
}

// --- resource types and associations -----------------------------------------------------------

/// Every resource type, in creation order.
pub async fn resource_types(db: &impl ConnectionTrait) -> Result<Vec<ResourceType>> {
    let rows = type_row::Entity::find().order_by_asc(type_row::Column::Id).all(db).await?;
    Ok(rows
        .into_iter()
        .map(|r| ResourceType { name: r.name, created_at: r.created_at, updated_at: r.updated_at })
        .collect())
}

/// Namespace id → its associations, in creation order.
async fn all_associations(db: &impl ConnectionTrait) -> Result<HashMap<i32, Vec<Association>>> {
    let types: HashMap<i32, String> =
        type_row::Entity::find().all(db).await?.into_iter().map(|t| (t.id, t.name)).collect();
    let rows = assoc_row::Entity::find().order_by_asc(assoc_row::Column::Id).all(db).await?;
    let mut out: HashMap<i32, Vec<Association>> = HashMap::new();
    for row in rows {
        let Some(name) = types.get(&row.resource_type_id) else { continue };
        out.entry(row.namespace_id).or_default().push(Association {
            name: name.clone(),
            prefix: row.prefix,
            properties_target: row.properties_target,
            created_at: row.created_at,
            updated_at: row.updated_at,
        });
    }
    Ok(out)
}

/// The associations of `ns`.
pub async fn associations(db: &impl ConnectionTrait, ns: &Namespace) -> Result<Vec<Association>> {
    Ok(all_associations(db).await?.remove(&ns.id).unwrap_or_default())
}

/// The id of resource type `name`, created (with `protected`) if it does not exist yet.
pub(crate) async fn ensure_resource_type(db: &impl ConnectionTrait, name: &str, protected: bool) -> Result<i32> {
    let find = || type_row::Entity::find().filter(type_row::Column::Name.eq(name)).one(db);
    if let Some(row) = find().await? {
        return Ok(row.id);
    }
    let row = type_row::ActiveModel {
        name: Set(name.to_owned()),
        protected: Set(protected),
        created_at: Set(now()),
        updated_at: Set(None),
        ..Default::default()
    };
    type_row::Entity::insert(row).exec_without_returning(db).await?;
    find().await?.map(|r| r.id).ok_or_else(|| Error::Internal(format!("resource type {name} vanished")))
}

async fn associate_in(db: &impl ConnectionTrait, ns: &Namespace, input: &AssociationInput) -> Result<()> {
    let type_id = ensure_resource_type(db, &input.name, false).await?;
    let at = now();
    let row = assoc_row::ActiveModel {
        resource_type_id: Set(type_id),
        namespace_id: Set(ns.id),
        properties_target: Set(input.properties_target.clone()),
        prefix: Set(input.prefix.clone()),
        created_at: Set(at),
        updated_at: Set(Some(at)),
        ..Default::default()
    };
    assoc_row::Entity::insert(row).exec_without_returning(db).await.map_err(|e| {
        unique(e, || {
            format!(
                "The metadata definition resource-type association of resource-type={} to namespace={} already exists.",
                input.name, ns.namespace
            )
        })
    })?;
    Ok(())
}

/// Associates `ns` with the resource type `input` names (created if unknown); 409 if it is.
pub async fn associate(db: &DatabaseConnection, ns: &Namespace, input: &AssociationInput) -> Result<Association> {
    db.transaction_async(async |txn| associate_in(txn, ns, input).await).await?;
    associations(db, ns)
        .await?
        .into_iter()
        .find(|a| a.name == input.name)
        .ok_or_else(|| Error::Internal(format!("association with {} vanished", input.name)))
}

/// Removes the association of `ns` with resource type `name` (the type stays), or 404.
pub async fn dissociate(db: &impl ConnectionTrait, ns: &Namespace, name: &str) -> Result<()> {
    let not_found = || Error::NotFound(format!("Failed to find resource type {name} to delete"));
    let ty = type_row::Entity::find().filter(type_row::Column::Name.eq(name)).one(db).await?.ok_or_else(not_found)?;
    let result = assoc_row::Entity::delete_many()
        .filter(assoc_row::Column::NamespaceId.eq(ns.id))
        .filter(assoc_row::Column::ResourceTypeId.eq(ty.id))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(not_found());
    }
    Ok(())
}
