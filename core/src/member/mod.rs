//! Image members: the projects a shared image is offered to, and who may change what.

pub mod repo;

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use crate::context::RequestContext;
use crate::image::{Image, Visibility};
use crate::{Error, Result, policy};

string_enum! {
    /// A member project's answer to the offer.
    MemberStatus {
        /// Offered, not answered: the image is usable by id but not listed by default.
        Pending => "pending",
        /// Accepted: the image is listed for the member.
        Accepted => "accepted",
        /// Declined: still usable by id, listed only on request.
        Rejected => "rejected",
    }
}

/// One membership of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    pub status: MemberStatus,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Every member call needs a shared image (403 otherwise).
pub fn check_shared(image: &Image) -> Result<()> {
    if image.visibility == Visibility::Shared {
        Ok(())
    } else {
        Err(Error::Forbidden("Only shared images have members.".into()))
    }
}

/// Adding and removing members (`add_member`, `delete_member`): by default admin or a member
/// of the owning project.
pub fn check_manage(ctx: &RequestContext, image: &Image, rule: &str) -> Result<()> {
    policy::check_image(ctx, image, rule)
}

/// Reading memberships (`get_members`, `get_member`): a caller outside the owning project
/// reads as the member it is.
pub fn check_read(ctx: &RequestContext, image: &Image, rule: &str) -> Result<()> {
    let as_member = if ctx.owns(image.owner.as_deref()) { None } else { ctx.project_id.as_deref() };
    policy::check_member(ctx, image, rule, as_member)
}

/// Accepting or rejecting (`modify_member`): by default admin, or the member role in the
/// member project itself (the image's owner may not answer for its members).
pub fn check_answer(ctx: &RequestContext, image: &Image, member_id: &str) -> Result<()> {
    policy::check_member(ctx, image, "modify_member", Some(member_id))
}

/// Which memberships the caller may read: all of them (admin, owning project), or only its
/// own entry (a member project).
pub fn readable_by<'a>(ctx: &'a RequestContext, image: &Image) -> Option<&'a str> {
    if ctx.is_admin || ctx.owns(image.owner.as_deref()) {
        None
    } else {
        Some(ctx.project_id.as_deref().unwrap_or_default())
    }
}

/// The `member` of a `POST .../members` body.
pub fn member_to_add(body: &Value) -> Result<String> {
    match body.get("member") {
        None | Some(Value::Null) => Err(Error::BadRequest("Member to be added not specified".into())),
        Some(Value::String(member)) if member.trim().is_empty() => {
            Err(Error::BadRequest("Member can't be empty".into()))
        }
        Some(Value::String(member)) if member.chars().count() > 255 => {
            Err(Error::BadRequest("Member id is too long (max 255)".into()))
        }
        Some(Value::String(member)) => Ok(member.clone()),
        Some(_) => Err(Error::BadRequest("Expected a member in the form: {\"member\": \"image_id\"}".into())),
    }
}

/// The `status` of a `PUT .../members/{member}` body.
pub fn status_to_set(body: &Value) -> Result<MemberStatus> {
    match body.get("status") {
        None | Some(Value::Null) => Err(Error::BadRequest("Status not specified".into())),
        Some(Value::String(status)) => status
            .parse()
            .map_err(|_| Error::BadRequest(format!("Provided image member status '{status}' is not supported"))),
        Some(other) => Err(Error::BadRequest(format!("Provided image member status '{other}' is not supported"))),
    }
}

/// `GET /v2/schemas/member`.
pub fn member_schema() -> Value {
    let uuid = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";
    json!({
        "name": "member",
        "properties": {
            "created_at": {"type": "string", "description": "Date and time of image member creation"},
            "image_id": {"type": "string", "description": "An identifier for the image", "pattern": uuid},
            "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
            "status": {"type": "string", "description": "The status of this image member",
                       "enum": MemberStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()},
            "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
            "schema": {"readOnly": true, "type": "string"}
        }
    })
}

/// `GET /v2/schemas/members`.
pub fn members_schema() -> Value {
    json!({
        "name": "members",
        "properties": {"members": {"type": "array", "items": member_schema()}, "schema": {"type": "string"}},
        "links": [{"rel": "describedby", "href": "{schema}"}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_bodies_are_checked_in_glance_words() {
        let err = |body: Value| member_to_add(&body).expect_err("refused").to_string();
        assert_eq!(err(json!({})), "Member to be added not specified");
        assert_eq!(err(json!({"member": ""})), "Member can't be empty");
        assert!(err(json!({"member": 5})).starts_with("Expected a member"));
        assert_eq!(member_to_add(&json!({"member": "p2"})).ok().as_deref(), Some("p2"));
        assert_eq!(status_to_set(&json!({"status": "accepted"})).ok(), Some(MemberStatus::Accepted));
        assert!(status_to_set(&json!({"status": "maybe"})).is_err());
        assert!(status_to_set(&json!({})).is_err());
    }
}
