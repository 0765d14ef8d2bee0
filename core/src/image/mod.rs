//! The image: its fields, statuses and the one state machine that says what may happen to it.

mod create;
pub mod data;
mod delete;
pub mod hash;
pub mod import;
pub mod location_import;
pub mod location_rules;
pub mod locations;
mod patch;
pub mod query;
pub mod repo;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;

use crate::{Error, Result};

pub use create::{check_quotas, new_image};
pub use delete::{delete, delete_from_store};
pub use patch::{Dialect, Op, PatchOp, PatchPath, apply_patch};

/// An image as the domain sees it: the row, its extra properties and its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub status: Status,
    pub visibility: Visibility,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub min_disk: i32,
    pub min_ram: i32,
    pub owner: Option<String>,
    pub protected: bool,
    pub os_hidden: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Extra properties; `None` only for keys the schema declares nullable.
    pub properties: BTreeMap<String, Option<String>>,
    pub tags: BTreeSet<String>,
    /// Ids of the stores holding the image's data.
    pub stores: BTreeSet<String>,
    /// The live copies of the image's data, oldest first.
    pub locations: Vec<locations::Location>,
}

impl Image {
    /// Data may only arrive once both formats are known (400 otherwise, in Glance's words).
    pub fn check_formats_for_data(&self) -> Result<()> {
        let missing: Vec<&str> = [("disk_format", &self.disk_format), ("container_format", &self.container_format)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        match missing.as_slice() {
            [] => Ok(()),
            [one] => Err(Error::BadRequest(format!("Property {one} must be set prior to saving data."))),
            _ => Err(Error::BadRequest(format!("Properties {} must be set prior to saving data.", missing.join(", ")))),
        }
    }
}

string_enum! {
    /// Image status (Glance's nine).
    Status {
        /// Record exists, no data yet.
        Queued => "queued",
        /// Data is being uploaded through `PUT /file`.
        Saving => "saving",
        /// Data is being staged for a glance-direct import.
        Uploading => "uploading",
        /// An import task is running.
        Importing => "importing",
        /// Data is available.
        Active => "active",
        /// Legacy failed upload; never produced by v2.
        Killed => "killed",
        /// Deleted, data removal pending.
        PendingDelete => "pending_delete",
        /// Deleted.
        Deleted => "deleted",
        /// Data download refused to non-admins.
        Deactivated => "deactivated",
    }
}

string_enum! {
    /// Who can see an image.
    Visibility {
        /// Everyone, listed by default.
        Public => "public",
        /// Owner only.
        Private => "private",
        /// Owner and member projects.
        Shared => "shared",
        /// Everyone by id; listed by default only for the owner.
        Community => "community",
    }
}

/// Status-changing operations on an image, asked of [`Status::next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST .../actions/deactivate`.
    Deactivate,
    /// `POST .../actions/reactivate`.
    Reactivate,
    /// `DELETE /v2/images/{id}`.
    Delete,
    /// `PUT /v2/images/{id}/file`: data arrives through the API.
    Upload,
    /// `PUT /v2/images/{id}/stage`: data goes to the staging area.
    Stage,
    /// Import of data staged before (`glance-direct`).
    ImportStaged,
    /// Import of data fetched from elsewhere (`web-download`, legacy `import` tasks).
    ImportRemote,
    /// Copy of an active image's data to more stores (`copy-image`); the status stays.
    Copy,
    /// A location added (PATCH `/locations/-`): a queued image becomes active, an active one
    /// stays.
    SetLocations,
    /// The locations replaced (PATCH `/locations`): as [`Action::SetLocations`].
    ReplaceLocations,
    /// A location removed (PATCH `/locations`): only from an active image.
    RemoveLocation,
    /// `POST /v2/images/{id}/locations` (API 2.17): only a queued image, which the task then
    /// makes active.
    AddLocation,
}

impl Status {
    /// Statuses Glance's state machine allows to follow `self` (docs/glance-v2-api.md §3.1).
    pub fn allowed_next(self) -> &'static [Status] {
        use Status::*;
        match self {
            Queued => &[Saving, Uploading, Importing, Active, Deleted],
            Saving => &[Active, Killed, Deleted, Queued],
            Uploading => &[Importing, Queued, Deleted],
            Importing => &[Active, Deleted, Queued],
            Active => &[PendingDelete, Deleted, Deactivated],
            Killed => &[Deleted],
            PendingDelete => &[Deleted, Active],
            Deleted => &[],
            Deactivated => &[Active, Deleted],
        }
    }

    /// The status `action` leads to from `self`, or the error the API answers with.
    /// Returning `self` means the action is an accepted no-op.
    pub fn next(self, action: Action) -> Result<Status> {
        let target = match action {
            Action::Deactivate => match self {
                Status::Active | Status::Deactivated => Status::Deactivated,
                other => {
                    return Err(Error::Forbidden(format!("Not allowed to deactivate image in status '{other}'")));
                }
            },
            Action::Reactivate => match self {
                Status::Active | Status::Deactivated => Status::Active,
                other => {
                    return Err(Error::Forbidden(format!("Not allowed to reactivate image in status '{other}'")));
                }
            },
            Action::Delete => Status::Deleted,
            Action::Upload => match self {
                Status::Queued => Status::Saving,
                other => {
                    return Err(Error::Conflict(format!(
                        "Image status transition from {other} to saving is not allowed"
                    )));
                }
            },
            Action::Stage => match self {
                Status::Queued => Status::Uploading,
                other => {
                    return Err(Error::Conflict(format!(
                        "Image status transition from {other} to uploading is not allowed"
                    )));
                }
            },
            Action::ImportStaged | Action::ImportRemote | Action::Copy => return self.import_target(action),
            Action::SetLocations | Action::ReplaceLocations | Action::RemoveLocation | Action::AddLocation => {
                return self.location_target(action);
            }
        };
        if target == self || self.allowed_next().contains(&target) {
            Ok(target)
        } else {
            Err(Error::Conflict(format!("Image status transition from {self} to {target} is not allowed")))
        }
    }

    /// Where an import moves the image, with Glance's 409 texts for the wrong status.
    fn import_target(self, action: Action) -> Result<Status> {
        let conflict = |text: &str| Err(Error::Conflict(text.to_owned()));
        match (action, self) {
            (Action::Copy, Status::Active) => Ok(Status::Active),
            (Action::Copy, _) => conflict("Only images with status active can be targeted for copying"),
            (_, Status::Active) => conflict("Image with status active cannot be target for import"),
            (Action::ImportStaged, Status::Uploading) => Ok(Status::Importing),
            (Action::ImportStaged, _) => conflict("Image needs to be staged before 'glance-direct' method can be used"),
            (_, Status::Queued) => Ok(Status::Importing),
            _ => conflict("Image needs to be in 'queued' state to use 'web-download' method"),
        }
    }

    /// Where a location change moves the image, with Glance's 409 texts for the wrong status.
    fn location_target(self, action: Action) -> Result<Status> {
        let (verb, allowed): (&str, &[Status]) = match action {
            Action::RemoveLocation => ("remove", &[Status::Active]),
            Action::AddLocation => ("add", &[Status::Queued]),
            Action::ReplaceLocations => ("replace", &[Status::Queued, Status::Active]),
            _ => ("add", &[Status::Queued, Status::Active]),
        };
        if allowed.contains(&self) {
            Ok(if action == Action::RemoveLocation { self } else { Status::Active })
        } else {
            Err(Error::Conflict(format!("It's not allowed to {verb} locations if image status is {self}.")))
        }
    }

    /// `disk_format` and `container_format` may only change while the data is not yet there.
    pub fn formats_mutable(self) -> bool {
        matches!(self, Status::Queued | Status::Importing)
    }
}

/// What an upload produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingested {
    /// Bytes stored.
    pub size: u64,
    /// md5 hex digest (Glance's `checksum`).
    pub checksum: String,
    /// sha512 hex digest (`os_hash_value`).
    pub os_hash_value: String,
    /// Where the store put the data.
    pub location: String,
}

/// `os_hash_algo` of every digest Glint computes.
pub const HASH_ALGO: &str = "sha512";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deactivate_from_active_and_again_is_a_no_op() {
        assert_eq!(Status::Active.next(Action::Deactivate).ok(), Some(Status::Deactivated));
        assert_eq!(Status::Deactivated.next(Action::Deactivate).ok(), Some(Status::Deactivated));
    }

    #[test]
    fn deactivate_from_other_statuses_is_forbidden() {
        for status in [Status::Queued, Status::Saving, Status::Uploading, Status::Importing, Status::Killed] {
            assert!(matches!(status.next(Action::Deactivate), Err(Error::Forbidden(_))), "{status}");
            assert!(matches!(status.next(Action::Reactivate), Err(Error::Forbidden(_))), "{status}");
        }
    }

    #[test]
    fn reactivate_from_deactivated_and_active() {
        assert_eq!(Status::Deactivated.next(Action::Reactivate).ok(), Some(Status::Active));
        assert_eq!(Status::Active.next(Action::Reactivate).ok(), Some(Status::Active));
    }

    #[test]
    fn delete_is_allowed_from_every_live_status() {
        for status in Status::ALL.iter().filter(|s| !matches!(s, Status::Deleted | Status::PendingDelete)) {
            assert_eq!(status.next(Action::Delete).ok(), Some(Status::Deleted), "{status}");
        }
    }

    #[test]
    fn upload_only_from_queued() {
        assert_eq!(Status::Queued.next(Action::Upload).ok(), Some(Status::Saving));
        for status in Status::ALL.iter().filter(|s| **s != Status::Queued) {
            assert!(matches!(status.next(Action::Upload), Err(Error::Conflict(_))), "{status}");
        }
    }

    #[test]
    fn stage_only_from_queued() {
        assert_eq!(Status::Queued.next(Action::Stage).ok(), Some(Status::Uploading));
        for status in Status::ALL.iter().filter(|s| **s != Status::Queued) {
            assert!(matches!(status.next(Action::Stage), Err(Error::Conflict(_))), "{status}");
        }
    }

    #[test]
    fn imports_follow_the_status_matrix() {
        use Status::*;
        for status in Status::ALL.iter().copied().filter(|s| !matches!(s, Deleted | PendingDelete)) {
            let code = |action| status.next(action).ok();
            assert_eq!(code(Action::ImportStaged), (status == Uploading).then_some(Importing), "{status}");
            assert_eq!(code(Action::ImportRemote), (status == Queued).then_some(Importing), "{status}");
            assert_eq!(code(Action::Copy), (status == Active).then_some(Active), "{status}");
        }
    }

    #[test]
    fn locations_change_only_queued_or_active_images() {
        use Status::*;
        for status in Status::ALL.iter().copied() {
            let code = |action| status.next(action).ok();
            assert_eq!(code(Action::SetLocations), matches!(status, Queued | Active).then_some(Active), "{status}");
            assert_eq!(code(Action::ReplaceLocations), code(Action::SetLocations), "{status}");
            assert_eq!(code(Action::RemoveLocation), (status == Active).then_some(Active), "{status}");
            assert_eq!(code(Action::AddLocation), (status == Queued).then_some(Active), "{status}");
        }
    }

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().ok(), Some(*status));
        }
    }
}
