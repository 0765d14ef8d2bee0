//! The image list (`GET /v2/images`): its query types and the one SQL visibility rule.

use chrono::NaiveDateTime;
use sea_orm::sea_query::{Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::repo::{get_as_seen_by, read};
use super::{Image, Status, Visibility};
use crate::context::RequestContext;
use crate::db::entity::{image, image_member, image_property, image_tag};
use crate::list::SortDir;
use crate::member::MemberStatus;
use crate::{Error, Result, policy};

/// The columns of `images` a list may filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Column {
    Name,
    Id,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    VirtualSize,
    MinRam,
    MinDisk,
    Protected,
    CreatedAt,
    UpdatedAt,
    Owner,
    Checksum,
    OsHashAlgo,
    OsHashValue,
}

impl Column {
    fn sql(self) -> image::Column {
        match self {
            Column::Name => image::Column::Name,
            Column::Id => image::Column::Id,
            Column::Status => image::Column::Status,
            Column::ContainerFormat => image::Column::ContainerFormat,
            Column::DiskFormat => image::Column::DiskFormat,
            Column::Size => image::Column::Size,
            Column::VirtualSize => image::Column::VirtualSize,
            Column::MinRam => image::Column::MinRam,
            Column::MinDisk => image::Column::MinDisk,
            Column::Protected => image::Column::Protected,
            Column::CreatedAt => image::Column::CreatedAt,
            Column::UpdatedAt => image::Column::UpdatedAt,
            Column::Owner => image::Column::Owner,
            Column::Checksum => image::Column::Checksum,
            Column::OsHashAlgo => image::Column::OsHashAlgo,
            Column::OsHashValue => image::Column::OsHashValue,
        }
    }
}

/// What a list filter compares: an `images` column or an extra property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A column of `images`.
    Column(Column),
    /// An extra property, by name.
    Property(String),
}

/// Comparison operators of list filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

/// What a filter compares a field with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterValue {
    /// Names, ids, statuses, hashes and every extra property.
    Text(String),
    /// Sizes, `min_ram`, `min_disk`.
    Integer(i64),
    /// `protected`.
    Bool(bool),
    /// `created_at`, `updated_at` (UTC).
    Time(NaiveDateTime),
}

impl From<&str> for FilterValue {
    fn from(text: &str) -> Self {
        FilterValue::Text(text.to_owned())
    }
}

impl From<i64> for FilterValue {
    fn from(n: i64) -> Self {
        FilterValue::Integer(n)
    }
}

impl From<bool> for FilterValue {
    fn from(b: bool) -> Self {
        FilterValue::Bool(b)
    }
}

impl From<NaiveDateTime> for FilterValue {
    fn from(at: NaiveDateTime) -> Self {
        FilterValue::Time(at)
    }
}

impl FilterValue {
    fn sql(&self) -> sea_orm::Value {
        match self {
            FilterValue::Text(text) => text.clone().into(),
            FilterValue::Integer(n) => (*n).into(),
            FilterValue::Bool(b) => (*b).into(),
            FilterValue::Time(at) => (*at).into(),
        }
    }
}

/// One condition of `GET /v2/images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// The field equals one of the texts.
    In(Field, Vec<String>),
    /// The field compares with the value.
    Cmp(Field, Cmp, FilterValue),
}

/// The `visibility` list parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisibilityFilter {
    /// Only this visibility.
    Only(Visibility),
    /// Everything the caller may see, community included.
    All,
}

/// The `member_status` list parameter: which memberships make a shared image listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberFilter {
    /// Only memberships in this status (`accepted` by default).
    Only(MemberStatus),
    /// Any status.
    All,
}

/// Sortable keys of the image list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    Id,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    /// Parses a sort key name; unknown names are a 400.
    pub fn parse(name: &str) -> Result<SortKey> {
        Ok(match name {
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "container_format" => SortKey::ContainerFormat,
            "disk_format" => SortKey::DiskFormat,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            other => return Err(Error::BadRequest(format!("Invalid sort key: {other}. It is not supported."))),
        })
    }

    /// NULLs sort as '' or 0, as Glance's query does.
    fn expr(self) -> Expr {
        let coalesce =
            |column: image::Column, default: sea_orm::Value| Expr::col((image::Entity, column)).if_null(default);
        match self {
            SortKey::Name => coalesce(image::Column::Name, "".into()),
            SortKey::ContainerFormat => coalesce(image::Column::ContainerFormat, "".into()),
            SortKey::DiskFormat => coalesce(image::Column::DiskFormat, "".into()),
            SortKey::Size => coalesce(image::Column::Size, 0i64.into()),
            SortKey::Status => Expr::col((image::Entity, image::Column::Status)),
            SortKey::Id => Expr::col((image::Entity, image::Column::Id)),
            SortKey::CreatedAt => Expr::col((image::Entity, image::Column::CreatedAt)),
            SortKey::UpdatedAt => Expr::col((image::Entity, image::Column::UpdatedAt)),
        }
    }

    fn value_of(self, image: &Image) -> sea_orm::Value {
        let text = |v: &Option<String>| sea_orm::Value::from(v.clone().unwrap_or_default());
        match self {
            SortKey::Name => text(&image.name),
            SortKey::ContainerFormat => text(&image.container_format),
            SortKey::DiskFormat => text(&image.disk_format),
            SortKey::Size => image.size.unwrap_or(0).into(),
            SortKey::Status => image.status.as_str().into(),
            SortKey::Id => image.id.clone().into(),
            SortKey::CreatedAt => image.created_at.into(),
            SortKey::UpdatedAt => image.updated_at.into(),
        }
    }
}

/// A parsed `GET /v2/images` request.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Column and property conditions, all of which must hold.
    pub filters: Vec<Filter>,
    /// Tags the image must all carry.
    pub tags: Vec<String>,
    /// `None` = the default visibility rule.
    pub visibility: Option<VisibilityFilter>,
    /// Which memberships count for shared images.
    pub member_status: MemberFilter,
    /// `true` lists only hidden images, `false` only visible ones.
    pub os_hidden: bool,
    /// Sort keys with directions; `created_at` and `id` are appended as tie-breakers.
    pub sort: Vec<(SortKey, SortDir)>,
    /// Page size (already clamped).
    pub limit: u64,
    /// Id of the last image of the previous page.
    pub marker: Option<String>,
}

/// One page of images the caller may see, in the requested order.
pub async fn list(db: &DatabaseConnection, ctx: &RequestContext, query: &ListQuery) -> Result<Vec<Image>> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let mut sort = query.sort.clone();
    let tie_order = match sort.as_slice() {
        [(_, first), rest @ ..] if rest.iter().all(|(_, o)| o == first) => *first,
        _ => SortDir::Desc,
    };
    for key in [SortKey::CreatedAt, SortKey::Id] {
        if !sort.iter().any(|(k, _)| *k == key) {
            sort.push((key, tie_order));
        }
    }

    let mut select = image::Entity::find()
        .filter(image::Column::Deleted.eq(false))
        .filter(image::Column::Status.ne(Status::Killed.as_str()))
        .filter(image::Column::OsHidden.eq(query.os_hidden))
        .filter(visibility_condition(ctx, query.visibility, query.member_status));
    for filter in &query.filters {
        select = select.filter(filter_condition(filter));
    }
    if !query.tags.is_empty() {
        select = select.filter(carrying_every_tag(&query.tags));
    }
    if let Some(marker) = &query.marker {
        let (marker_image, member) = get_as_seen_by(db, ctx, marker)
            .await?
            .ok_or_else(|| Error::BadRequest(format!("Invalid marker. Image {marker} could not be found.")))?;
        if !policy::can_see(ctx, &marker_image, member) {
            return Err(Error::Forbidden(format!("Invalid marker. Image {marker} is not visible to you.")));
        }
        select = select.filter(after_marker(&sort, &marker_image));
    }
    for (key, dir) in &sort {
        select = select.order_by(key.expr(), dir.order());
    }
    Ok(read(db, select.limit(query.limit), None).await?.into_iter().map(|(image, _)| image).collect())
}

/// Rows strictly after the marker in the full sort order: the lexicographic "greater than"
/// over the sort keys, written as an OR of prefixes-equal-then-one-beyond.
fn after_marker(sort: &[(SortKey, SortDir)], marker: &Image) -> Condition {
    let mut any = Condition::any();
    for i in 0..sort.len() {
        let mut all = Condition::all();
        for (key, _) in &sort[..i] {
            all = all.add(key.expr().eq(key.value_of(marker)));
        }
        let (key, dir) = &sort[i];
        let beyond = match dir {
            SortDir::Asc => key.expr().gt(key.value_of(marker)),
            SortDir::Desc => key.expr().lt(key.value_of(marker)),
        };
        any = any.add(all.add(beyond));
    }
    any
}

/// Images carrying every one of `tags`, as one subquery however many there are: one EXISTS per
/// tag made PostgreSQL's planner take seconds for a few dozen of them (tens of seconds for a
/// hundred), for any reader to ask.
fn carrying_every_tag(tags: &[String]) -> Expr {
    let tags: std::collections::BTreeSet<&str> = tags.iter().map(String::as_str).collect();
    let value = || Expr::col((image_tag::Entity, image_tag::Column::Value));
    let carrying = Query::select()
        .column((image_tag::Entity, image_tag::Column::ImageId))
        .from(image_tag::Entity)
        .and_where(value().is_in(tags.iter().copied()))
        .group_by_col((image_tag::Entity, image_tag::Column::ImageId))
        .and_having(value().count_distinct().eq(tags.len() as i64))
        .to_owned();
    Expr::col((image::Entity, image::Column::Id)).in_subquery(carrying)
}

/// `SELECT 1 FROM <child> WHERE <child>.<fk> = images.id`, to be narrowed and wrapped in EXISTS.
fn child_rows<E: EntityTrait, C: ColumnTrait>(entity: E, fk: C) -> SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(entity)
        .and_where(Expr::col((entity, fk)).equals((image::Entity, image::Column::Id)))
        .to_owned()
}

fn membership(project: &str, status: MemberFilter) -> Expr {
    let mut rows = child_rows(image_member::Entity, image_member::Column::ImageId);
    rows.and_where(Expr::col((image_member::Entity, image_member::Column::Member)).eq(project))
        .and_where(Expr::col((image_member::Entity, image_member::Column::Deleted)).eq(false));
    if let MemberFilter::Only(status) = status {
        rows.and_where(Expr::col((image_member::Entity, image_member::Column::Status)).eq(status.as_str()));
    }
    Expr::exists(rows)
}

/// The images the caller may list: [`crate::policy::can_see`] written as SQL, narrowed by the
/// `visibility` and `member_status` parameters (admins see everything only on request, and
/// shared images count only through a membership in the asked status). Change both together.
fn visibility_condition(ctx: &RequestContext, filter: Option<VisibilityFilter>, members: MemberFilter) -> Condition {
    let vis = |v: Visibility| image::Column::Visibility.eq(v.as_str());
    let owned = match &ctx.project_id {
        Some(project) => image::Column::Owner.eq(project.as_str()),
        None => Expr::val(false),
    };
    if ctx.is_admin {
        return match filter {
            None => Condition::any().add(vis(Visibility::Community).not()).add(owned),
            Some(VisibilityFilter::All) => Condition::all(),
            Some(VisibilityFilter::Only(v)) => Condition::all().add(vis(v)),
        };
    }
    let shared_with_me = match &ctx.project_id {
        Some(project) => Condition::all().add(vis(Visibility::Shared)).add(membership(project, members)),
        None => Condition::all().add(Expr::val(false)),
    };
    let ownerless = image::Column::Owner.is_null();
    match filter {
        None => Condition::any()
            .add(Condition::all().add(ownerless).add(vis(Visibility::Community).not()))
            .add(vis(Visibility::Public))
            .add(owned)
            .add(shared_with_me),
        Some(VisibilityFilter::All) => Condition::any()
            .add(ownerless)
            .add(vis(Visibility::Public))
            .add(vis(Visibility::Community))
            .add(owned)
            .add(shared_with_me),
        Some(VisibilityFilter::Only(v @ (Visibility::Public | Visibility::Community))) => Condition::all().add(vis(v)),
        Some(VisibilityFilter::Only(Visibility::Private)) => {
            Condition::all().add(vis(Visibility::Private)).add(Condition::any().add(owned).add(ownerless))
        }
        Some(VisibilityFilter::Only(Visibility::Shared)) => Condition::any()
            .add(Condition::all().add(vis(Visibility::Shared)).add(Condition::any().add(owned).add(ownerless)))
            .add(shared_with_me),
    }
}

fn compare(lhs: Expr, cmp: Cmp, value: &FilterValue) -> Expr {
    let value = value.sql();
    match cmp {
        Cmp::Eq => lhs.eq(value),
        Cmp::Ne => lhs.ne(value),
        Cmp::Gt => lhs.gt(value),
        Cmp::Gte => lhs.gte(value),
        Cmp::Lt => lhs.lt(value),
        Cmp::Lte => lhs.lte(value),
    }
}

fn filter_condition(filter: &Filter) -> Expr {
    let (Filter::In(field, _) | Filter::Cmp(field, _, _)) = filter;
    let condition = |lhs: Expr| match filter {
        Filter::In(_, texts) => lhs.is_in(texts.iter().cloned().map(sea_orm::Value::from)),
        Filter::Cmp(_, cmp, value) => compare(lhs, *cmp, value),
    };
    match field {
        Field::Column(column) => condition(Expr::col((image::Entity, column.sql()))),
        Field::Property(name) => Expr::exists(
            child_rows(image_property::Entity, image_property::Column::ImageId)
                .and_where(Expr::col((image_property::Entity, image_property::Column::Name)).eq(name.as_str()))
                .and_where(condition(Expr::col((image_property::Entity, image_property::Column::Value))))
                .to_owned(),
        ),
    }
}
