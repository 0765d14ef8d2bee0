//! `GET /v2/images` query parameters: filters, visibility and sorting, with Glance's errors.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use glint_core::config::ImagesConfig;
use glint_core::image::Visibility;
use glint_core::image::query::{Cmp, Column, Field, Filter, ListQuery, MemberFilter, SortKey, VisibilityFilter};
use glint_core::list::SortDir;
use glint_core::member::MemberStatus;

use super::{Params, direction};
use crate::error::ApiError;

/// Parameters that are not filters.
const CONTROL: &[&str] =
    &["limit", "marker", "sort_key", "sort_dir", "sort", "visibility", "member_status", "tag", "os_hidden"];

/// Most filter parameters, `tag`s and values of all filters together (an `in:` list counts
/// each item) one request may give: each becomes part of one SQL statement, and a thousand
/// filters exceeded SQLite's expression depth (a 500 any reader could cause). Each property
/// filter is a subquery of its own, and PostgreSQL takes 0.1 s to plan 32 of them, 2 s for
/// 100; tags share one subquery. No sensible query comes near these.
const MAX_FILTERS: usize = 20;
const MAX_TAGS: usize = 100;
const MAX_FILTER_VALUES: usize = 1000;

/// Most sort keys: each further key adds a term to every condition of the marker's keyset
/// comparison (quadratic), and repeating one of the 8 sortable keys adds no order.
const MAX_SORT_KEYS: usize = 8;

/// Parses the query of an image list request.
pub fn parse(params: &Params, cfg: &ImagesConfig) -> Result<ListQuery, ApiError> {
    let limit = params.limit(cfg)?;
    let visibility = match params.last("visibility") {
        None => None,
        Some("all") => Some(VisibilityFilter::All),
        Some(v) => Some(VisibilityFilter::Only(
            v.parse::<Visibility>().map_err(|_| ApiError::bad_request(format!("Invalid visibility value: {v}")))?,
        )),
    };
    let member_status = match params.last("member_status") {
        None => MemberFilter::Only(MemberStatus::Accepted),
        Some("all") => MemberFilter::All,
        Some(v) => {
            MemberFilter::Only(v.parse().map_err(|_| ApiError::bad_request(format!("Invalid status value: {v}")))?)
        }
    };
    let os_hidden = match params.last("os_hidden").map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "Invalid value '{v}' for 'os_hidden' filter. Valid values are 'true' or 'false'."
            )));
        }
    };

    let mut filters = Vec::new();
    for (key, value) in params.pairs().iter().filter(|(k, _)| !CONTROL.contains(&k.as_str())) {
        if filters.len() == MAX_FILTERS {
            return Err(ApiError::bad_request(format!("Too many filters: at most {MAX_FILTERS} are allowed.")));
        }
        filters.push(filter(key, value)?);
    }
    let values: usize = filters.iter().map(|f| if let Filter::In(_, texts) = f { texts.len() } else { 1 }).sum();
    if values > MAX_FILTER_VALUES {
        return Err(ApiError::bad_request(format!(
            "Too many filter values: at most {MAX_FILTER_VALUES} are allowed in all filters together."
        )));
    }
    let tags: Vec<String> = params.all("tag").map(str::to_owned).collect();
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(format!("Too many tag filters: at most {MAX_TAGS} are allowed.")));
    }
    Ok(ListQuery {
        filters,
        tags,
        visibility,
        member_status,
        os_hidden,
        sort: sort(params)?,
        limit,
        marker: params.marker(),
    })
}

fn filter(key: &str, value: &str) -> Result<Filter, ApiError> {
    let column = |c: Column| Field::Column(c);
    Ok(match key {
        "changes-since" => {
            return Err(ApiError::bad_request("The 'changes-since' filter is no longer available on v2."));
        }
        "name" | "id" | "status" | "container_format" | "disk_format" => {
            let col = match key {
                "name" => Column::Name,
                "id" => Column::Id,
                "status" => Column::Status,
                "container_format" => Column::ContainerFormat,
                _ => Column::DiskFormat,
            };
            Filter::In(column(col), operator_values(value)?)
        }
        "size_min" | "size_max" | "virtual_size_min" | "virtual_size_max" => {
            let n = integer(key, value)?;
            let col = if key.starts_with("virtual") { Column::VirtualSize } else { Column::Size };
            let cmp = if key.ends_with("_min") { Cmp::Gte } else { Cmp::Lte };
            Filter::Cmp(column(col), cmp, n.into())
        }
        "min_ram" | "min_disk" | "size" | "virtual_size" => {
            let col = match key {
                "min_ram" => Column::MinRam,
                "min_disk" => Column::MinDisk,
                "size" => Column::Size,
                _ => Column::VirtualSize,
            };
            Filter::Cmp(column(col), Cmp::Eq, integer(key, value)?.into())
        }
        "protected" => match value {
            "true" | "false" => Filter::Cmp(column(Column::Protected), Cmp::Eq, (value == "true").into()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid value '{value}' for 'protected' filter. Valid values are 'true' or 'false'."
                )));
            }
        },
        "created_at" | "updated_at" => {
            let (cmp, at) = time_filter(value)?;
            let col = if key == "created_at" { Column::CreatedAt } else { Column::UpdatedAt };
            Filter::Cmp(column(col), cmp, at.into())
        }
        "owner" | "checksum" | "os_hash_algo" | "os_hash_value" => {
            let col = match key {
                "owner" => Column::Owner,
                "checksum" => Column::Checksum,
                "os_hash_algo" => Column::OsHashAlgo,
                _ => Column::OsHashValue,
            };
            Filter::Cmp(column(col), Cmp::Eq, value.into())
        }
        property => Filter::Cmp(Field::Property(property.to_owned()), Cmp::Eq, value.into()),
    })
}

fn integer(key: &str, value: &str) -> Result<i64, ApiError> {
    value.trim().parse().map_err(|_| ApiError::bad_request(format!("Invalid value for {key}: must be an integer")))
}

/// `eq:v`, `in:a,"b, c"` or a bare value; any other prefix before `:` is an unknown operator.
fn operator_values(value: &str) -> Result<Vec<String>, ApiError> {
    let Some((op, rest)) = value.split_once(':') else { return Ok(vec![value.to_owned()]) };
    match op {
        "eq" => Ok(vec![rest.to_owned()]),
        "in" => split_in_list(rest),
        _ => Err(ApiError::bad_request(format!("Unable to filter on a unknown operator '{op}'."))),
    }
}

fn split_in_list(list: &str) -> Result<Vec<String>, ApiError> {
    let mut values = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                quoted = false;
                if !matches!(chars.peek(), None | Some(',')) {
                    return Err(ApiError::bad_request("Invalid in-list: a closing quote must end the value"));
                }
            }
            '"' if current.is_empty() => quoted = true,
            ',' if !quoted => values.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if quoted {
        return Err(ApiError::bad_request("Invalid in-list: unterminated quote"));
    }
    values.push(current);
    Ok(values)
}

fn time_filter(value: &str) -> Result<(Cmp, NaiveDateTime), ApiError> {
    let ops =
        [("gte", Cmp::Gte), ("gt", Cmp::Gt), ("lte", Cmp::Lte), ("lt", Cmp::Lt), ("neq", Cmp::Ne), ("eq", Cmp::Eq)];
    let (cmp, time) = match value.split_once(':') {
        Some((op, rest)) if op.chars().all(|c| c.is_ascii_alphabetic()) => {
            let cmp = ops
                .iter()
                .find(|(name, _)| *name == op)
                .map(|(_, cmp)| *cmp)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid operator '{op}' for time filter")))?;
            (cmp, rest)
        }
        _ => (Cmp::Eq, value),
    };
    let at = parse_time(time).ok_or_else(|| ApiError::bad_request(format!("Invalid time format: {time}")))?;
    Ok((cmp, at))
}

/// ISO 8601: with an offset (converted to UTC), without one (UTC), or a bare date.
fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc).naive_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn sort(params: &Params) -> Result<Vec<(SortKey, SortDir)>, ApiError> {
    let keys: Vec<&str> = params.all("sort_key").collect();
    let dirs: Vec<&str> = params.all("sort_dir").collect();
    let new_style: Vec<&str> = params.all("sort").collect();
    if !new_style.is_empty() {
        if !keys.is_empty() || !dirs.is_empty() {
            return Err(ApiError::bad_request("The 'sort' argument is not supported with 'sort_key' or 'sort_dir'."));
        }
        let mut sort = Vec::new();
        for item in new_style.iter().flat_map(|s| s.split(',')) {
            if sort.len() == MAX_SORT_KEYS {
                return Err(too_many_sort_keys());
            }
            let (key, dir) = item.trim().split_once(':').unwrap_or((item.trim(), "desc"));
            sort.push((SortKey::parse(key.trim())?, direction(dir.trim())?));
        }
        return Ok(sort);
    }
    if keys.len() > MAX_SORT_KEYS {
        return Err(too_many_sort_keys());
    }
    let dirs = dirs.into_iter().map(direction).collect::<Result<Vec<_>, _>>()?;
    let keys = if keys.is_empty() { vec!["created_at"] } else { keys };
    if dirs.len() > 1 && dirs.len() != keys.len() {
        return Err(ApiError::bad_request("Number of sort dirs does not match the number of sort keys"));
    }
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let dir = match dirs.len() {
                0 => SortDir::Desc,
                1 => dirs[0],
                _ => dirs[i],
            };
            Ok((SortKey::parse(key)?, dir))
        })
        .collect()
}

fn too_many_sort_keys() -> ApiError {
    ApiError::bad_request(format!("Too many sort keys: at most {MAX_SORT_KEYS} are allowed."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Params {
        Params::parse(Some(query))
    }

    #[test]
    fn in_list_honours_quotes() {
        assert_eq!(
            split_in_list("\"glass, darkly\",share me").ok(),
            Some(vec!["glass, darkly".to_owned(), "share me".to_owned()])
        );
    }

    #[test]
    fn unknown_operator_is_refused() {
        assert!(operator_values("foo:bar").is_err());
        assert_eq!(operator_values("eq:foo:bar").ok(), Some(vec!["foo:bar".to_owned()]));
    }

    #[test]
    fn limit_is_clamped_and_checked() {
        let cfg = ImagesConfig::default();
        assert_eq!(parse(&pairs("limit=5000"), &cfg).ok().map(|q| q.limit), Some(1000));
        assert!(parse(&pairs("limit=-1"), &cfg).is_err());
        assert!(parse(&pairs("limit=x"), &cfg).is_err());
        assert_eq!(parse(&pairs(""), &cfg).ok().map(|q| q.limit), Some(25));
    }

    #[test]
    fn sort_forms_cannot_be_mixed() {
        assert!(sort(&pairs("sort=name:asc&sort_key=name")).is_err());
        assert_eq!(
            sort(&pairs("sort=name:asc,size")).ok(),
            Some(vec![(SortKey::Name, SortDir::Asc), (SortKey::Size, SortDir::Desc)])
        );
    }

    #[test]
    fn one_sort_dir_applies_to_every_key() {
        assert_eq!(
            sort(&pairs("sort_key=name&sort_key=size&sort_dir=asc")).ok(),
            Some(vec![(SortKey::Name, SortDir::Asc), (SortKey::Size, SortDir::Asc)])
        );
        assert!(sort(&pairs("sort_key=name&sort_dir=asc&sort_dir=desc&sort_dir=asc")).is_err());
    }

    #[test]
    fn filters_tags_values_and_sort_keys_are_bounded() {
        let cfg = ImagesConfig::default();
        let repeat = |item: &str, n: usize| vec![item; n].join("&");
        let listed = |query: String| parse(&pairs(&query), &cfg).is_ok();
        assert!(listed(repeat("os_distro=x", MAX_FILTERS)));
        assert!(!listed(repeat("os_distro=x", MAX_FILTERS + 1)));
        assert!(listed(repeat("tag=t", MAX_TAGS)));
        assert!(!listed(repeat("tag=t", MAX_TAGS + 1)));
        let in_list = |n: usize| format!("name=in:{}", vec!["a"; n].join(","));
        assert!(listed(in_list(MAX_FILTER_VALUES)));
        assert!(!listed(in_list(MAX_FILTER_VALUES + 1)));
        assert!(!listed(format!("{}&os_distro=x", in_list(MAX_FILTER_VALUES))));
        assert!(listed(repeat("sort_key=name", MAX_SORT_KEYS)));
        assert!(!listed(repeat("sort_key=name", MAX_SORT_KEYS + 1)));
        assert!(listed(format!("sort={}", ["name:asc"; MAX_SORT_KEYS].join(","))));
        assert!(!listed(format!("sort={}", ["name:asc"; MAX_SORT_KEYS + 1].join(","))));
    }

    #[test]
    fn time_filters_parse_operators_and_offsets() {
        let (cmp, at) = time_filter("gte:2024-05-05T19:15:10+02:00").expect("parses");
        assert_eq!(cmp, Cmp::Gte);
        assert_eq!(at.to_string(), "2024-05-05 17:15:10");
        assert!(time_filter("foo:2024-05-05T17:15:10Z").is_err());
        assert!(time_filter("gt:yesterday").is_err());
    }
}
