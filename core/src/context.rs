//! The request context: who is calling (project, user, roles), the request id, and the
//! policy the caller is judged by.

use std::sync::Arc;

use crate::policy::{Policy, Target};

/// The caller of one request, built by the auth layer (no-auth headers today, Keystone later).
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The caller's project; owner of the images it creates. `None` in anonymous no-auth mode.
    pub project_id: Option<String>,
    /// The calling user.
    pub user_id: Option<String>,
    /// Lower-cased role names, implied roles included (admin ⇒ member ⇒ reader).
    pub roles: Vec<String>,
    /// Cloud-wide administrator (rule `context_is_admin`, or no-auth without identity headers).
    pub is_admin: bool,
    /// `req-<uuid>`: echoed in `x-openstack-request-id` and stored on tasks.
    pub request_id: String,
    /// The rules this request is judged by (Glance's defaults until [`RequestContext::under`]).
    pub policy: Arc<Policy>,
}

impl RequestContext {
    /// Builds a context from the roles a token or trusted header carried, expanding the
    /// implied roles of Keystone's bootstrap (admin ⇒ member ⇒ reader).
    pub fn new(
        project_id: Option<String>,
        user_id: Option<String>,
        roles: impl IntoIterator<Item = String>,
        request_id: String,
    ) -> Self {
        let mut roles: Vec<String> =
            roles.into_iter().map(|r| r.trim().to_lowercase()).filter(|r| !r.is_empty()).collect();
        let implied: &[(&str, &str)] = &[("admin", "member"), ("member", "reader")];
        for (role, implies) in implied {
            if roles.iter().any(|r| r == role) && !roles.iter().any(|r| r == implies) {
                roles.push((*implies).to_owned());
            }
        }
        let mut ctx =
            Self { project_id, user_id, roles, is_admin: false, request_id, policy: Policy::glance_defaults() };
        ctx.is_admin = ctx.policy.check("context_is_admin", &ctx, &Target::default());
        ctx
    }

    /// The same caller judged by `policy`: its `context_is_admin` rule decides who is admin
    /// (callers outside any project keep what their constructor gave them).
    pub fn under(mut self, policy: Arc<Policy>) -> Self {
        self.policy = policy;
        if self.project_id.is_some() {
            self.is_admin = false;
            self.is_admin = self.policy.check("context_is_admin", &self, &Target::default());
        }
        self
    }

    /// The context Glance's unauthenticated mode gives every request: admin, no project, and
    /// the admin role (so that rules naming `role:admin`, such as `service_api`, hold too).
    pub fn anonymous_admin(request_id: String) -> Self {
        Self {
            project_id: None,
            user_id: None,
            roles: ["admin", "member", "reader"].map(str::to_owned).to_vec(),
            is_admin: true,
            request_id,
            policy: Policy::glance_defaults(),
        }
    }

    /// The context of a token scoped to the system or a domain (or to nothing): no project
    /// and no role that any rule counts. Every Glance rule is `scope_types=['project']` and
    /// oslo.policy enforces scopes by default, so such a token passes no rule whatever its
    /// roles: images are 404 to it, creating and listing 403, as for a caller without roles.
    pub fn outside_project(user_id: Option<String>, request_id: String) -> Self {
        Self {
            project_id: None,
            user_id,
            roles: vec![],
            is_admin: false,
            request_id,
            policy: Policy::glance_defaults(),
        }
    }

    /// Whether the caller holds `role` (after expansion of implied roles).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller's project is `owner` (never true for owner-less images).
    pub fn owns(&self, owner: Option<&str>) -> bool {
        matches!((self.project_id.as_deref(), owner), (Some(p), Some(o)) if p == o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_member_and_reader() {
        let ctx = RequestContext::new(Some("p".into()), None, vec![" Admin ".into()], "req-1".into());
        assert!(ctx.is_admin && ctx.has_role("member") && ctx.has_role("reader"));
    }

    #[test]
    fn a_token_outside_any_project_holds_no_role() {
        let ctx = RequestContext::outside_project(Some("u".into()), "req-1".into());
        assert!(!ctx.is_admin && !ctx.has_role("reader") && ctx.project_id.is_none());
    }

    #[test]
    fn reader_implies_nothing_more() {
        let ctx = RequestContext::new(Some("p".into()), None, vec!["reader".into()], "req-1".into());
        assert!(!ctx.is_admin && !ctx.has_role("member"));
    }
}
