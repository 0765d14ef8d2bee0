//! Glance's default image policy: who may see and change an image. Handlers ask here.

use crate::context::RequestContext;
use crate::image::{Image, Visibility};
use crate::{Error, Result};

/// Storage-level visibility: whether `image` exists at all for the caller (404 otherwise).
/// `is_member` says whether the caller's project holds a live membership of the image.
/// The list's SQL filter ([`crate::image::query`], `visibility_condition`) is the same rule written as a
/// query, with the list's `visibility` and `member_status` parameters on top: change both.
pub fn can_see(ctx: &RequestContext, image: &Image, is_member: bool) -> bool {
    if ctx.is_admin {
        return true;
    }
    if !ctx.has_role("reader") {
        return false;
    }
    image.owner.is_none()
        || matches!(image.visibility, Visibility::Public | Visibility::Community)
        || ctx.owns(image.owner.as_deref())
        || (image.visibility == Visibility::Shared && is_member)
}

/// `get_images`: listing needs at least the reader role.
pub fn check_list(ctx: &RequestContext) -> Result<()> {
    if ctx.is_admin || ctx.has_role("reader") {
        Ok(())
    } else {
        Err(Error::Forbidden("You are not authorized to complete get_images action.".into()))
    }
}

/// `add_image`: admin, or a member creating an image owned by its own project.
pub fn check_create(ctx: &RequestContext, owner: Option<&str>) -> Result<()> {
    if ctx.is_admin {
        return Ok(());
    }
    if !ctx.has_role("member") {
        return Err(Error::Forbidden("You are not authorized to complete add_image action.".into()));
    }
    if owner.is_some() && !ctx.owns(owner) {
        return Err(Error::Forbidden(format!(
            "You are not permitted to create images owned by '{}'.",
            owner.unwrap_or_default()
        )));
    }
    Ok(())
}

/// `modify_image` and friends (delete, tags, deactivate, upload): admin or owner-member.
/// Owner-less images are read-only for everyone but admins.
pub fn check_modify(ctx: &RequestContext, image: &Image, action: &str) -> Result<()> {
    if ctx.is_admin || (ctx.has_role("member") && ctx.owns(image.owner.as_deref())) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("You are not authorized to complete {action} action.")))
    }
}

/// `download_image`: the caller must hold `member`, not just `reader` (visibility was
/// already checked when the image was found).
pub fn check_download(ctx: &RequestContext) -> Result<()> {
    if ctx.is_admin || ctx.has_role("member") {
        Ok(())
    } else {
        Err(Error::Forbidden("You are not authorized to complete download_image action.".into()))
    }
}

/// `get_image_location` then `delete_image_location` (`DELETE /v2/stores/...`): admins only
/// by default. The first needs a reader of the owning project, the second an admin, and the
/// refusal names the first rule that failed.
pub fn check_delete_location(ctx: &RequestContext, image: &Image) -> Result<()> {
    if ctx.is_admin {
        return Ok(());
    }
    let rule = if ctx.has_role("reader") && ctx.owns(image.owner.as_deref()) {
        "delete_image_location"
    } else {
        "get_image_location"
    };
    Err(Error::Forbidden(format!("You are not authorized to complete {rule} action.")))
}

/// `publicize_image` / `communitize_image`: who may set a visibility.
pub fn check_visibility(ctx: &RequestContext, owner: Option<&str>, visibility: Visibility) -> Result<()> {
    let allowed = match visibility {
        Visibility::Public => ctx.is_admin,
        Visibility::Community => ctx.is_admin || (ctx.has_role("member") && ctx.owns(owner)),
        Visibility::Private | Visibility::Shared => true,
    };
    if allowed {
        Ok(())
    } else {
        let action = if visibility == Visibility::Public { "publicize_image" } else { "communitize_image" };
        Err(Error::Forbidden(format!("You are not authorized to complete {action} action.")))
    }
}

/// Replacing the owner is an admin's business (upstream checks `replace` only; we check both).
pub fn check_owner_change(ctx: &RequestContext) -> Result<()> {
    if ctx.is_admin { Ok(()) } else { Err(Error::Forbidden("Owner can't be updated by non admin.".into())) }
}

/// `set_image_location` (PATCH add or replace on `/locations`): admin or owner-member.
pub fn check_set_location(ctx: &RequestContext, image: &Image) -> Result<()> {
    check_modify(ctx, image, "set_image_location")
}

/// `delete_image_location` (PATCH remove on `/locations`): admins only.
pub fn check_remove_location(ctx: &RequestContext) -> Result<()> {
    if ctx.is_admin {
        Ok(())
    } else {
        Err(Error::Forbidden("You are not authorized to complete delete_image_location action.".into()))
    }
}

/// Glance's `service_api` rule: the `service` role (other services' tokens) or an admin.
pub fn is_service(ctx: &RequestContext) -> bool {
    ctx.is_admin || ctx.has_role("service")
}

/// `add_image_location` (`POST /v2/images/{id}/locations`): a service, or owner-member.
pub fn check_add_location(ctx: &RequestContext, image: &Image) -> Result<()> {
    if is_service(ctx) || (ctx.has_role("member") && ctx.owns(image.owner.as_deref())) {
        Ok(())
    } else {
        Err(Error::Forbidden("You are not authorized to complete add_image_location action.".into()))
    }
}

/// `fetch_image_location` (`GET /v2/images/{id}/locations`): services only.
pub fn check_fetch_locations(ctx: &RequestContext) -> Result<()> {
    if is_service(ctx) {
        Ok(())
    } else {
        Err(Error::Forbidden("You are not authorized to complete fetch_image_location action.".into()))
    }
}
