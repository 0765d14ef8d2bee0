//! Definition files: Glance's JSON format (one namespace per file, as in Glance's
//! `etc/metadefs/*.json`), loaded into the catalog and exported from it, and Glint's own
//! default catalog (`etc/metadefs/` in the repository, compiled into the binary so that every
//! installation has it whatever its working directory).
//!
//! Loading is idempotent: a namespace, association, property, object or tag that exists is
//! updated in place when the file says something else and left alone (timestamps included)
//! when it does not; nothing is ever inserted twice and nothing the files do not mention is
//! removed. Loaded rows are owned by the file's `owner`, else `admin`, and have no
//! `updated_at` until they change, as in Glance. Unlike Glance, objects keep their `required`
//! list, so an export gives back what was loaded.

use std::path::{Path, PathBuf};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};
use serde_json::{Map, Value, json};

use super::repo::{self, ensure_resource_type, json_map};
use super::{Namespace, Object};
use crate::db::entity::{
    metadef_namespace as ns_row, metadef_namespace_resource_type as assoc_row, metadef_object as object_row,
    metadef_property as property_row, metadef_resource_type as type_row, metadef_tag as tag_row,
};
use crate::db::now;
use crate::{Error, Result};

/// The owner of loaded namespaces whose file names none (Glance's choice).
pub const DEFAULT_OWNER: &str = "admin";

/// Glint's default catalog: the files of `etc/metadefs/`.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("glint-hardware.json", include_str!("../../../etc/metadefs/glint-hardware.json")),
    ("glint-operating-system.json", include_str!("../../../etc/metadefs/glint-operating-system.json")),
    ("glint-guest-shutdown.json", include_str!("../../../etc/metadefs/glint-guest-shutdown.json")),
];

/// What a load did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Files read.
    pub files: usize,
    /// Rows inserted (namespaces, associations, resource types, properties, objects, tags).
    pub inserted: usize,
    /// Rows whose content changed.
    pub updated: usize,
}

/// Reads every `*.json` file of `dir` (or the one file `dir` names), in name order.
pub fn read(dir: &Path) -> Result<Vec<(PathBuf, Value)>> {
    let io = |path: &Path, e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
    let mut paths: Vec<PathBuf> = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect()
    };
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let value = serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            Ok((path, value))
        })
        .collect()
}

/// Loads the definition files of `dir` into the catalog.
pub async fn load_dir(db: &DatabaseConnection, dir: &Path) -> Result<LoadReport> {
    let files = read(dir)?;
    let mut report = LoadReport::default();
    for (path, file) in &files {
        load_one(db, file, &mut report).await.map_err(|e| match e {
            Error::BadRequest(why) => Error::Config(format!("{}: {why}", path.display())),
            other => other,
        })?;
    }
    Ok(report)
}

/// Loads definitions (one parsed file each) into the catalog.
pub async fn load(db: &DatabaseConnection, files: &[Value]) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    for file in files {
        load_one(db, file, &mut report).await?;
    }
    Ok(report)
}

/// Loads [`DEFAULTS`] when the catalog is empty (no namespace and no resource type), so a
/// fresh installation has them and an operator's deletions are never undone.
pub async fn load_defaults_if_empty(db: &DatabaseConnection) -> Result<Option<LoadReport>> {
    if ns_row::Entity::find().count(db).await? > 0 || type_row::Entity::find().count(db).await? > 0 {
        return Ok(None);
    }
    let files = DEFAULTS
        .iter()
        .map(|(name, text)| serde_json::from_str(text).map_err(|e| Error::Internal(format!("built-in {name}: {e}"))))
        .collect::<Result<Vec<Value>>>()?;
    load(db, &files).await.map(Some)
}

fn text(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::BadRequest(format!("'{key}' must be a string"))),
    }
}

fn list<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Vec<&'a Map<String, Value>>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_object().ok_or_else(|| Error::BadRequest(format!("every item of '{key}' must be an object"))))
            .collect(),
        Some(_) => Err(Error::BadRequest(format!("'{key}' must be a list"))),
    }
}

fn named(map: &Map<String, Value>, what: &str) -> Result<String> {
    text(map, "name")?.ok_or_else(|| Error::BadRequest(format!("every item of '{what}' needs a name")))
}

fn fragments(value: Option<&Value>) -> Result<Map<String, Value>> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) if map.values().all(Value::is_object) => Ok(map.clone()),
        Some(_) => Err(Error::BadRequest("'properties' must map names to objects".into())),
    }
}

async fn load_one(db: &DatabaseConnection, file: &Value, report: &mut LoadReport) -> Result<()> {
    let file = file.as_object().ok_or_else(|| Error::BadRequest("a definition file holds one JSON object".into()))?;
    let name = text(file, "namespace")?.ok_or_else(|| Error::BadRequest("'namespace' is required".into()))?;
    let protected = match file.get("protected") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(Error::BadRequest("'protected' must be a boolean".into())),
    };
    let fields = (
        text(file, "display_name")?,
        text(file, "description")?,
        text(file, "visibility")?,
        protected,
        text(file, "owner")?.unwrap_or_else(|| DEFAULT_OWNER.into()),
    );
    db.transaction_async(async |txn| -> Result<()> {
        let existing = ns_row::Entity::find().filter(ns_row::Column::Namespace.eq(&name)).one(txn).await?;
        match &existing {
            None => {
                let row = ns_row::ActiveModel {
                    namespace: Set(name.clone()),
                    display_name: Set(fields.0.clone()),
                    description: Set(fields.1.clone()),
                    visibility: Set(fields.2.clone()),
                    protected: Set(fields.3),
                    owner: Set(fields.4.clone()),
                    created_at: Set(now()),
                    updated_at: Set(None),
                    ..Default::default()
                };
                ns_row::Entity::insert(row).exec_without_returning(txn).await?;
                report.inserted += 1;
            }
            Some(row)
                if (&row.display_name, &row.description, &row.visibility, row.protected, &row.owner)
                    != (&fields.0, &fields.1, &fields.2, fields.3, &fields.4) =>
            {
                ns_row::Entity::update_many()
                    .col_expr(ns_row::Column::DisplayName, Expr::value(fields.0.clone()))
                    .col_expr(ns_row::Column::Description, Expr::value(fields.1.clone()))
                    .col_expr(ns_row::Column::Visibility, Expr::value(fields.2.clone()))
                    .col_expr(ns_row::Column::Protected, Expr::value(fields.3))
                    .col_expr(ns_row::Column::Owner, Expr::value(fields.4.clone()))
                    .col_expr(ns_row::Column::UpdatedAt, Expr::value(now()))
                    .filter(ns_row::Column::Id.eq(row.id))
                    .exec(txn)
                    .await?;
                report.updated += 1;
            }
            Some(_) => {}
        }
        let ns_id = ns_row::Entity::find()
            .filter(ns_row::Column::Namespace.eq(&name))
            .one(txn)
            .await?
            .map(|r| r.id)
            .ok_or_else(|| Error::Internal(format!("namespace {name} vanished while loading")))?;

        for association in list(file, "resource_type_associations")? {
            load_association(txn, ns_id, association, report).await?;
        }
        for (property, fragment) in fragments(file.get("properties"))? {
            load_property(txn, ns_id, &property, &fragment, report).await?;
        }
        for object in list(file, "objects")? {
            load_object(txn, ns_id, object, report).await?;
        }
        for tag in list(file, "tags")? {
            let tag = named(tag, "tags")?;
            let exists = tag_row::Entity::find()
                .filter(tag_row::Column::NamespaceId.eq(ns_id))
                .filter(tag_row::Column::Name.eq(&tag))
                .one(txn)
                .await?
                .is_some();
            if !exists {
                let row = tag_row::ActiveModel {
                    namespace_id: Set(ns_id),
                    name: Set(tag),
                    created_at: Set(now()),
                    updated_at: Set(None),
                    ..Default::default()
                };
                tag_row::Entity::insert(row).exec_without_returning(txn).await?;
                report.inserted += 1;
            }
        }
        Ok(())
    })
    .await?;
    report.files += 1;
    Ok(())
}

async fn load_association(
    db: &impl ConnectionTrait,
    ns_id: i32,
    file: &Map<String, Value>,
    report: &mut LoadReport,
) -> Result<()> {
    let name = named(file, "resource_type_associations")?;
    let (prefix, target) = (text(file, "prefix")?, text(file, "properties_target")?);
    let known = type_row::Entity::find().filter(type_row::Column::Name.eq(&name)).one(db).await?.is_some();
    let type_id = ensure_resource_type(db, &name, true).await?;
    report.inserted += usize::from(!known);
    let existing = assoc_row::Entity::find()
        .filter(assoc_row::Column::NamespaceId.eq(ns_id))
        .filter(assoc_row::Column::ResourceTypeId.eq(type_id))
        .one(db)
        .await?;
    match existing {
        None => {
            let row = assoc_row::ActiveModel {
                resource_type_id: Set(type_id),
                namespace_id: Set(ns_id),
                properties_target: Set(target),
                prefix: Set(prefix),
                created_at: Set(now()),
                updated_at: Set(None),
                ..Default::default()
            };
            assoc_row::Entity::insert(row).exec_without_returning(db).await?;
            report.inserted += 1;
        }
        Some(row) if (row.prefix.as_ref(), row.properties_target.as_ref()) != (prefix.as_ref(), target.as_ref()) => {
            assoc_row::Entity::update_many()
                .col_expr(assoc_row::Column::Prefix, Expr::value(prefix))
                .col_expr(assoc_row::Column::PropertiesTarget, Expr::value(target))
                .col_expr(assoc_row::Column::UpdatedAt, Expr::value(now()))
                .filter(assoc_row::Column::NamespaceId.eq(ns_id))
                .filter(assoc_row::Column::ResourceTypeId.eq(type_id))
                .exec(db)
                .await?;
            report.updated += 1;
        }
        Some(_) => {}
    }
    Ok(())
}

async fn load_property(
    db: &impl ConnectionTrait,
    ns_id: i32,
    name: &str,
    fragment: &Value,
    report: &mut LoadReport,
) -> Result<()> {
    let existing = property_row::Entity::find()
        .filter(property_row::Column::NamespaceId.eq(ns_id))
        .filter(property_row::Column::Name.eq(name))
        .one(db)
        .await?;
    match existing {
        None => {
            let row = property_row::ActiveModel {
                namespace_id: Set(ns_id),
                name: Set(name.to_owned()),
                json_schema: Set(fragment.to_string()),
                created_at: Set(now()),
                updated_at: Set(None),
                ..Default::default()
            };
            property_row::Entity::insert(row).exec_without_returning(db).await?;
            report.inserted += 1;
        }
        Some(row) if Value::Object(json_map(&row.json_schema)) != *fragment => {
            property_row::Entity::update_many()
                .col_expr(property_row::Column::JsonSchema, Expr::value(fragment.to_string()))
                .col_expr(property_row::Column::UpdatedAt, Expr::value(now()))
                .filter(property_row::Column::Id.eq(row.id))
                .exec(db)
                .await?;
            report.updated += 1;
        }
        Some(_) => {}
    }
    Ok(())
}

async fn load_object(
    db: &impl ConnectionTrait,
    ns_id: i32,
    file: &Map<String, Value>,
    report: &mut LoadReport,
) -> Result<()> {
    let name = named(file, "objects")?;
    let description = text(file, "description")?;
    let required = match file.get("required") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(Value::Array(items.clone()).to_string())
        }
        Some(_) => return Err(Error::BadRequest(format!("'required' of object {name} must be a list of names"))),
    };
    let properties = Value::Object(fragments(file.get("properties"))?);
    let existing = object_row::Entity::find()
        .filter(object_row::Column::NamespaceId.eq(ns_id))
        .filter(object_row::Column::Name.eq(&name))
        .one(db)
        .await?;
    match existing {
        None => {
            let row = object_row::ActiveModel {
                namespace_id: Set(ns_id),
                name: Set(name),
                description: Set(description),
                required: Set(required),
                json_schema: Set(properties.to_string()),
                created_at: Set(now()),
                updated_at: Set(None),
                ..Default::default()
            };
            object_row::Entity::insert(row).exec_without_returning(db).await?;
            report.inserted += 1;
        }
        Some(row)
            if row.description != description
                || row.required != required
                || Value::Object(json_map(&row.json_schema)) != properties =>
        {
            object_row::Entity::update_many()
                .col_expr(object_row::Column::Description, Expr::value(description))
                .col_expr(object_row::Column::Required, Expr::value(required))
                .col_expr(object_row::Column::JsonSchema, Expr::value(properties.to_string()))
                .col_expr(object_row::Column::UpdatedAt, Expr::value(now()))
                .filter(object_row::Column::Id.eq(row.id))
                .exec(db)
                .await?;
            report.updated += 1;
        }
        Some(_) => {}
    }
    Ok(())
}

/// The definition file of `ns`, in the format [`load`] reads.
pub async fn export_namespace(db: &impl ConnectionTrait, ns: &Namespace) -> Result<Value> {
    let mut out = Map::new();
    out.insert("namespace".into(), json!(ns.namespace));
    let optional =
        [("display_name", &ns.display_name), ("description", &ns.description), ("visibility", &ns.visibility)];
    for (key, value) in optional {
        if let Some(value) = value {
            out.insert(key.into(), json!(value));
        }
    }
    if let Some(protected) = ns.protected {
        out.insert("protected".into(), json!(protected));
    }
    if ns.owner != DEFAULT_OWNER {
        out.insert("owner".into(), json!(ns.owner));
    }
    let associations: Vec<Value> = repo::associations(db, ns)
        .await?
        .into_iter()
        .map(|a| {
            let mut item = Map::new();
            item.insert("name".into(), json!(a.name));
            if let Some(prefix) = a.prefix {
                item.insert("prefix".into(), json!(prefix));
            }
            if let Some(target) = a.properties_target {
                item.insert("properties_target".into(), json!(target));
            }
            Value::Object(item)
        })
        .collect();
    if !associations.is_empty() {
        out.insert("resource_type_associations".into(), Value::Array(associations));
    }
    let properties: Map<String, Value> = repo::properties(db, ns)
        .await?
        .into_iter()
        .map(|p| {
            let mut schema = p.schema;
            schema.remove("name");
            (p.name, Value::Object(schema))
        })
        .collect();
    if !properties.is_empty() {
        out.insert("properties".into(), Value::Object(properties));
    }
    let objects: Vec<Value> = repo::objects(db, ns).await?.into_iter().map(export_object).collect();
    if !objects.is_empty() {
        out.insert("objects".into(), Value::Array(objects));
    }
    let tags: Vec<Value> = tag_row::Entity::find()
        .filter(tag_row::Column::NamespaceId.eq(ns.id))
        .order_by_asc(tag_row::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|t| json!({"name": t.name}))
        .collect();
    if !tags.is_empty() {
        out.insert("tags".into(), Value::Array(tags));
    }
    Ok(Value::Object(out))
}

fn export_object(object: Object) -> Value {
    let mut item = Map::new();
    item.insert("name".into(), json!(object.name));
    if let Some(description) = object.description {
        item.insert("description".into(), json!(description));
    }
    if !object.required.is_empty() {
        item.insert("required".into(), json!(object.required));
    }
    item.insert("properties".into(), Value::Object(object.properties));
    Value::Object(item)
}

/// Writes one file per namespace into `dir` (created if needed), named after the namespace;
/// returns how many.
pub async fn export_dir(db: &DatabaseConnection, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    let rows = ns_row::Entity::find().order_by_asc(ns_row::Column::Namespace).all(db).await?;
    let count = rows.len();
    for row in rows {
        let ns = repo::namespace_of(row);
        let file = dir.join(format!("{}.json", ns.namespace.replace(['/', '\\'], "_")));
        let mut text = serde_json::to_string_pretty(&export_namespace(db, &ns).await?)
            .map_err(|e| Error::Internal(e.to_string()))?;
        text.push('\n');
        std::fs::write(&file, text).map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_catalog_parses_and_names_the_image_and_volume_types() {
        let mut types = Vec::new();
        for (name, text) in DEFAULTS {
            let file: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            for association in file["resource_type_associations"].as_array().into_iter().flatten() {
                types.push(association["name"].as_str().unwrap_or_default().to_owned());
            }
        }
        for expected in ["OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor"] {
            assert!(types.iter().any(|t| t == expected), "{expected} missing from {types:?}");
        }
    }
}
