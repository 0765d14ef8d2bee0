//! What the paginated lists (images, tasks, metadefs) share: the sort direction.
//!
//! The lists' own query types live with their domain (`image::query`, `task::query`,
//! `metadefs::repo`); this type keeps `sea_orm::Order` out of them and out of the API.

use std::cmp::Ordering;

string_enum! {
    /// The `sort_dir` of a list.
    SortDir {
        /// Smallest first.
        Asc => "asc",
        /// Largest first: every list's default.
        Desc => "desc",
    }
}

impl SortDir {
    /// `ordering` (smallest first) turned to this direction, for lists sorted in memory.
    pub fn apply(self, ordering: Ordering) -> Ordering {
        match self {
            SortDir::Asc => ordering,
            SortDir::Desc => ordering.reverse(),
        }
    }

    /// The same direction in SQL.
    pub(crate) fn order(self) -> sea_orm::Order {
        match self {
            SortDir::Asc => sea_orm::Order::Asc,
            SortDir::Desc => sea_orm::Order::Desc,
        }
    }
}
