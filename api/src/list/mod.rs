//! What the paginated lists (images, tasks, metadef namespaces and tags) share: the decoded
//! query string, `limit`, `marker` and `sort_dir` with Glance's errors, the `first`/`next`
//! links and the page body.
//!
//! Each parameter is its own call rather than one parse of them all: every list reads its
//! parameters in Glance's order of checks, which decides the error a request with two bad
//! parameters gets.

pub mod images;

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use glint_core::config::ImagesConfig;
use glint_core::list::SortDir;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The decoded query string of a request, repeated parameters kept in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Params::parse(parts.uri.query()))
    }
}

impl Params {
    /// Decodes a query string (`+` and percent escapes); `None` is an empty one.
    pub fn parse(query: Option<&str>) -> Self {
        Params(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    /// Every parameter, in request order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Every value of `name`, in request order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of a parameter that is not a list: when repeated, the last one counts.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `limit` of a paged list: the configured default when absent, clamped to `api_limit_max`.
    pub fn limit(&self, cfg: &ImagesConfig) -> Result<u64, ApiError> {
        Ok(self.limit_as_given()?.map_or(cfg.limit_param_default, |n| n.min(cfg.api_limit_max)))
    }

    /// `limit` without default or clamp: `None` when absent, else an integer of at least 0.
    pub fn limit_as_given(&self) -> Result<Option<u64>, ApiError> {
        let Some(text) = self.last("limit") else { return Ok(None) };
        let n: i64 = text.trim().parse().map_err(|_| ApiError::bad_request("limit param must be an integer"))?;
        u64::try_from(n).map(Some).map_err(|_| ApiError::bad_request("limit param must be positive"))
    }

    /// `marker`: the last item of the previous page, as the `next` link handed it out.
    pub fn marker(&self) -> Option<String> {
        self.last("marker").map(str::to_owned)
    }

    /// `sort_dir` of a list with one sort key; descending when absent.
    pub fn sort_dir(&self) -> Result<SortDir, ApiError> {
        self.last("sort_dir").map_or(Ok(SortDir::Desc), direction)
    }

    /// The `first` and `next` links of the list at `path`: this request's parameters minus
    /// `marker`, repeated ones kept, and for `next` the new marker appended.
    pub fn links(&self, path: &str, next_marker: Option<&str>) -> Links {
        let encode = |marker: Option<&str>| {
            let mut serializer = form_urlencoded::Serializer::new(String::new());
            for (k, v) in self.0.iter().filter(|(k, _)| k != "marker") {
                serializer.append_pair(k, v);
            }
            if let Some(marker) = marker {
                serializer.append_pair("marker", marker);
            }
            serializer.finish()
        };
        let query = encode(None);
        let first = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
        Links { first, next: next_marker.map(|m| format!("{path}?{}", encode(Some(m)))) }
    }
}

/// One `sort_dir` value.
pub fn direction(text: &str) -> Result<SortDir, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("Invalid sort direction: {text}")))
}

/// The marker of the page after `page`: the last item's, if the page is full. A short page
/// is the last one, so it has no `next`.
pub fn next_marker<'a, T>(page: &'a [T], limit: u64, id: impl FnOnce(&'a T) -> &'a str) -> Option<&'a str> {
    if page.len() as u64 == limit { page.last().map(id) } else { None }
}

/// The `first` and `next` links of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links {
    /// The list from its start, with the same parameters.
    pub first: String,
    /// The following page; `None` on the last one.
    pub next: Option<String>,
}

/// A page as Glance writes it: the items under `collection`, `first`, `schema`, then `next`
/// unless this is the last page.
pub fn page(collection: &str, items: Vec<Value>, links: Links, schema: &str) -> Value {
    let mut body = Map::new();
    body.insert(collection.to_owned(), Value::Array(items));
    body.insert("first".to_owned(), Value::String(links.first));
    body.insert("schema".to_owned(), Value::String(schema.to_owned()));
    if let Some(next) = links.next {
        body.insert("next".to_owned(), Value::String(next));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairs(query: &str) -> Params {
        Params::parse(Some(query))
    }

    #[test]
    fn links_drop_the_marker_and_keep_repeats() {
        let Links { first, next } = pairs("tag=a&tag=b&marker=m&limit=2").links("/v2/images", Some("n"));
        assert_eq!(first, "/v2/images?tag=a&tag=b&limit=2");
        assert_eq!(next.as_deref(), Some("/v2/images?tag=a&tag=b&limit=2&marker=n"));
    }

    #[test]
    fn links_reencode_what_was_decoded() {
        let links = pairs("name=in%3Aa%2Cb&marker=x&q=a+b%26c").links("/v2/tasks", Some("m n"));
        assert_eq!(links.first, "/v2/tasks?name=in%3Aa%2Cb&q=a+b%26c");
        assert_eq!(links.next.as_deref(), Some("/v2/tasks?name=in%3Aa%2Cb&q=a+b%26c&marker=m+n"));
        assert_eq!(pairs("").links("/v2/tasks", Some("m")).next.as_deref(), Some("/v2/tasks?marker=m"));
    }

    #[test]
    fn limit_is_defaulted_clamped_and_checked() {
        let cfg = ImagesConfig::default();
        assert_eq!(pairs("").limit(&cfg).ok(), Some(25));
        assert_eq!(pairs("limit=7&limit=5000").limit(&cfg).ok(), Some(1000));
        assert_eq!(pairs("limit=5000").limit_as_given().ok(), Some(Some(5000)));
        assert_eq!(pairs("limit=%200%20").limit_as_given().ok(), Some(Some(0)));
        let message = |query: &str| pairs(query).limit_as_given().err().map(|e| format!("{e:?}"));
        assert!(message("limit=x").is_some_and(|m| m.contains("limit param must be an integer")));
        assert!(message("limit=-1").is_some_and(|m| m.contains("limit param must be positive")));
    }

    #[test]
    fn sort_dir_defaults_to_descending() {
        assert_eq!(pairs("").sort_dir().ok(), Some(SortDir::Desc));
        assert_eq!(pairs("sort_dir=desc&sort_dir=asc").sort_dir().ok(), Some(SortDir::Asc));
        assert!(pairs("sort_dir=up").sort_dir().is_err());
    }

    #[test]
    fn only_a_full_page_has_a_next() {
        let page = ["a", "b"];
        assert_eq!(next_marker(&page, 2, |s| *s), Some("b"));
        assert_eq!(next_marker(&page, 3, |s| *s), None);
        assert_eq!(next_marker(&[] as &[&str], 0, |s| *s), None);
    }

    #[test]
    fn page_keys_come_in_glance_order() {
        let links = Links { first: "/f".into(), next: Some("/n".into()) };
        let body = page("tasks", vec![json!(1)], links, "/s");
        assert_eq!(body.to_string(), r#"{"tasks":[1],"first":"/f","schema":"/s","next":"/n"}"#);
    }
}
