//! The authorization matrix of Glance's default policy (docs/glance-v2-api.md §8.2/§8.3 and §4.13), with
//! real Keystone tokens: for every image endpoint × caller × kind of image, the status code.
//!
//! Every image belongs to project `one` (its member alice created it). The callers:
//! admin (project `admin`, role admin), owner (alice, member of `one`), reader (rita, reader
//! of `one`), other (bob, member of `two`; the member project of the shared images) and
//! anonymous (no token). The kinds: public, private, shared with `two` accepted / pending /
//! rejected, community. Each cell runs on a fresh image, so one cell's change cannot leak
//! into the next.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::support::keystone::{Keystone, User, keystone};
use crate::support::{TestApp, on_every_database};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Public,
    Private,
    Accepted,
    Pending,
    Rejected,
    Community,
}

const KINDS: [Kind; 6] = [Kind::Public, Kind::Private, Kind::Accepted, Kind::Pending, Kind::Rejected, Kind::Community];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Admin,
    Owner,
    Reader,
    Other,
    Anonymous,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Show,
    Download,
    ListMembers,
    ShowMember,
    Update,
    AddTag,
    Delete,
    Upload,
    Stage,
    Deactivate,
    Reactivate,
    Publicize,
    Communitize,
    AddMember,
    AcceptMembership,
    RemoveMember,
}

use Caller::*;
use Op::*;

/// The expected status per kind, in the order of [`KINDS`]:
/// public, private, shared-accepted, shared-pending, shared-rejected, community.
#[rustfmt::skip]
const MATRIX: &[(Op, Caller, [u16; 6])] = &[
    //                         public private accepted pending rejected community
    // get_image: admin and the owner's readers see everything; another project sees public,
    // community and shared-with-it (any member status); private is 404.
    (Show,             Admin,     [200, 200, 200, 200, 200, 200]),
    (Show,             Owner,     [200, 200, 200, 200, 200, 200]),
    (Show,             Reader,    [200, 200, 200, 200, 200, 200]),
    (Show,             Other,     [200, 404, 200, 200, 200, 200]),
    // download_image needs the member role on top of seeing the image.
    (Download,         Admin,     [200, 200, 200, 200, 200, 200]),
    (Download,         Owner,     [200, 200, 200, 200, 200, 200]),
    (Download,         Reader,    [403, 403, 403, 403, 403, 403]),
    (Download,         Other,     [200, 404, 200, 200, 200, 200]),
    // Members exist only on shared images (403 otherwise); a member project lists its own entry.
    (ListMembers,      Admin,     [403, 403, 200, 200, 200, 403]),
    (ListMembers,      Owner,     [403, 403, 200, 200, 200, 403]),
    (ListMembers,      Reader,    [403, 403, 200, 200, 200, 403]),
    (ListMembers,      Other,     [403, 404, 200, 200, 200, 403]),
    // GET of one member turns every failure into 404.
    (ShowMember,       Admin,     [404, 404, 200, 200, 200, 404]),
    (ShowMember,       Owner,     [404, 404, 200, 200, 200, 404]),
    (ShowMember,       Reader,    [404, 404, 200, 200, 200, 404]),
    (ShowMember,       Other,     [404, 404, 200, 200, 200, 404]),
    // modify_image, delete_image, upload_image, deactivate/reactivate: admin or owner-member;
    // 403 to those who see the image, 404 to those who do not.
    (Update,           Admin,     [200, 200, 200, 200, 200, 200]),
    (Update,           Owner,     [200, 200, 200, 200, 200, 200]),
    (Update,           Reader,    [403, 403, 403, 403, 403, 403]),
    (Update,           Other,     [403, 404, 403, 403, 403, 403]),
    (AddTag,           Admin,     [204, 204, 204, 204, 204, 204]),
    (AddTag,           Owner,     [204, 204, 204, 204, 204, 204]),
    (AddTag,           Reader,    [403, 403, 403, 403, 403, 403]),
    (AddTag,           Other,     [403, 404, 403, 403, 403, 403]),
    (Delete,           Admin,     [204, 204, 204, 204, 204, 204]),
    (Delete,           Owner,     [204, 204, 204, 204, 204, 204]),
    (Delete,           Reader,    [403, 403, 403, 403, 403, 403]),
    (Delete,           Other,     [403, 404, 403, 403, 403, 403]),
    (Upload,           Admin,     [204, 204, 204, 204, 204, 204]),
    (Upload,           Owner,     [204, 204, 204, 204, 204, 204]),
    (Upload,           Reader,    [403, 403, 403, 403, 403, 403]),
    (Upload,           Other,     [403, 404, 403, 403, 403, 403]),
    (Stage,            Admin,     [204, 204, 204, 204, 204, 204]),
    (Stage,            Owner,     [204, 204, 204, 204, 204, 204]),
    (Stage,            Reader,    [403, 403, 403, 403, 403, 403]),
    (Stage,            Other,     [403, 404, 403, 403, 403, 403]),
    (Deactivate,       Admin,     [204, 204, 204, 204, 204, 204]),
    (Deactivate,       Owner,     [204, 204, 204, 204, 204, 204]),
    (Deactivate,       Reader,    [403, 403, 403, 403, 403, 403]),
    (Deactivate,       Other,     [403, 404, 403, 403, 403, 403]),
    (Reactivate,       Admin,     [204, 204, 204, 204, 204, 204]),
    (Reactivate,       Owner,     [204, 204, 204, 204, 204, 204]),
    (Reactivate,       Reader,    [403, 403, 403, 403, 403, 403]),
    (Reactivate,       Other,     [403, 404, 403, 403, 403, 403]),
    // publicize_image: admin only. communitize_image: admin or owner-member.
    (Publicize,        Admin,     [200, 200, 200, 200, 200, 200]),
    (Publicize,        Owner,     [403, 403, 403, 403, 403, 403]),
    (Publicize,        Reader,    [403, 403, 403, 403, 403, 403]),
    (Publicize,        Other,     [403, 404, 403, 403, 403, 403]),
    (Communitize,      Admin,     [200, 200, 200, 200, 200, 200]),
    (Communitize,      Owner,     [200, 200, 200, 200, 200, 200]),
    (Communitize,      Reader,    [403, 403, 403, 403, 403, 403]),
    (Communitize,      Other,     [403, 404, 403, 403, 403, 403]),
    // add_member / delete_member: admin or owner-member, shared images only.
    (AddMember,        Admin,     [403, 403, 200, 200, 200, 403]),
    (AddMember,        Owner,     [403, 403, 200, 200, 200, 403]),
    (AddMember,        Reader,    [403, 403, 403, 403, 403, 403]),
    (AddMember,        Other,     [403, 404, 403, 403, 403, 403]),
    (RemoveMember,     Admin,     [403, 403, 204, 204, 204, 403]),
    (RemoveMember,     Owner,     [403, 403, 204, 204, 204, 403]),
    (RemoveMember,     Reader,    [403, 403, 403, 403, 403, 403]),
    (RemoveMember,     Other,     [403, 404, 403, 403, 403, 403]),
    // modify_member: admin, or a member of the member project; never the owner (Tempest).
    (AcceptMembership, Admin,     [403, 403, 200, 200, 200, 403]),
    (AcceptMembership, Owner,     [403, 403, 403, 403, 403, 403]),
    (AcceptMembership, Reader,    [403, 403, 403, 403, 403, 403]),
    (AcceptMembership, Other,     [403, 404, 200, 200, 200, 403]),
];

/// What the default `GET /v2/images` (and with a filter) lists for each caller.
#[rustfmt::skip]
const LISTS: &[(Caller, &str, &[Kind])] = &[
    (Admin, "",                     &[Kind::Public, Kind::Private, Kind::Accepted, Kind::Pending, Kind::Rejected]),
    (Admin, "?visibility=all",      &[Kind::Public, Kind::Private, Kind::Accepted, Kind::Pending, Kind::Rejected, Kind::Community]),
    (Owner, "",                     &[Kind::Public, Kind::Private, Kind::Accepted, Kind::Pending, Kind::Rejected, Kind::Community]),
    (Reader, "",                    &[Kind::Public, Kind::Private, Kind::Accepted, Kind::Pending, Kind::Rejected, Kind::Community]),
    (Other, "",                     &[Kind::Public, Kind::Accepted]),
    (Other, "?member_status=pending", &[Kind::Public, Kind::Pending]),
    (Other, "?member_status=all",   &[Kind::Public, Kind::Accepted, Kind::Pending, Kind::Rejected]),
    (Other, "?visibility=community", &[Kind::Community]),
    (Other, "?visibility=shared",   &[Kind::Accepted]),
    (Other, "?visibility=private",  &[]),
];

/// The callers' views of one app.
struct Callers {
    views: BTreeMap<&'static str, TestApp>,
    keystone: &'static Keystone,
}

impl Callers {
    /// The views of `app`, which runs in keystone mode against the test Keystone.
    async fn new(app: &TestApp) -> Callers {
        let keystone = keystone().expect("the app's Keystone");
        let mut views = BTreeMap::new();
        for (name, user) in
            [("admin", User::Admin), ("owner", User::Alice), ("reader", User::Rita), ("other", User::Bob)]
        {
            views.insert(name, app.with_token(&keystone.token(user).await));
        }
        views.insert("anonymous", app.anonymous());
        Callers { views, keystone }
    }

    fn of(&self, caller: Caller) -> &TestApp {
        let name = match caller {
            Admin => "admin",
            Owner => "owner",
            Reader => "reader",
            Other => "other",
            Anonymous => "anonymous",
        };
        &self.views[name]
    }

    /// An image of project `one` of `kind`, active with data unless `op` needs it queued
    /// (upload, stage) or deactivated (reactivate).
    async fn image(&self, kind: Kind, op: Op) -> String {
        let (owner, admin) = (self.of(Owner), self.of(Admin));
        let visibility = match kind {
            Kind::Public | Kind::Private => "private",
            Kind::Community => "community",
            _ => "shared",
        };
        let created = owner.create_image(json!({"name": format!("{kind:?}"), "visibility": visibility, "disk_format": "raw", "container_format": "bare"})).await;
        let id = created["id"].as_str().unwrap().to_owned();
        if kind == Kind::Public {
            let response =
                admin.patch(&id, &json!([{"op": "replace", "path": "/visibility", "value": "public"}])).await;
            assert_eq!(response.status(), 200, "publicize {kind:?}");
        }
        let two = self.keystone.project("two");
        if matches!(kind, Kind::Accepted | Kind::Pending | Kind::Rejected) {
            let response = owner.post_json(&format!("/v2/images/{id}/members"), &json!({"member": two})).await;
            assert_eq!(response.status(), 200, "add member");
        }
        let answer = match kind {
            Kind::Accepted => Some("accepted"),
            Kind::Rejected => Some("rejected"),
            _ => None,
        };
        if let Some(status) = answer {
            let response = self
                .of(Other)
                .request(Method::PUT, &format!("/v2/images/{id}/members/{two}"))
                .json(&json!({"status": status}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "answer membership");
        }
        if !matches!(op, Upload | Stage) {
            let response = owner
                .request(Method::PUT, &format!("/v2/images/{id}/file"))
                .header("Content-Type", "application/octet-stream")
                .body("matrix data")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 204, "upload");
        }
        if op == Reactivate {
            let response =
                admin.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate")).send().await.unwrap();
            assert_eq!(response.status(), 204, "deactivate");
        }
        id
    }

    /// Performs `op` on image `id` as `caller`; the status code.
    async fn perform(&self, op: Op, caller: Caller, id: &str) -> u16 {
        let view = self.of(caller);
        let two = self.keystone.project("two");
        let image = format!("/v2/images/{id}");
        let visibility = |value: &str| json!([{"op": "replace", "path": "/visibility", "value": value}]);
        let request = |method: Method, path: String| view.request(method, &path);
        let response = match op {
            Show => view.get(&image).await,
            Download => view.get(&format!("{image}/file")).await,
            ListMembers => view.get(&format!("{image}/members")).await,
            ShowMember => view.get(&format!("{image}/members/{two}")).await,
            Update => view.patch(id, &json!([{"op": "replace", "path": "/name", "value": "renamed"}])).await,
            AddTag => request(Method::PUT, format!("{image}/tags/matrix")).send().await.unwrap(),
            Delete => view.delete(&image).await,
            Upload | Stage => {
                let path = if op == Upload { "file" } else { "stage" };
                request(Method::PUT, format!("{image}/{path}"))
                    .header("Content-Type", "application/octet-stream")
                    .body("new data")
                    .send()
                    .await
                    .unwrap()
            }
            Deactivate => request(Method::POST, format!("{image}/actions/deactivate")).send().await.unwrap(),
            Reactivate => request(Method::POST, format!("{image}/actions/reactivate")).send().await.unwrap(),
            Publicize => view.patch(id, &visibility("public")).await,
            Communitize => view.patch(id, &visibility("community")).await,
            AddMember => view.post_json(&format!("{image}/members"), &json!({"member": "a-third-project"})).await,
            RemoveMember => view.delete(&format!("{image}/members/{two}")).await,
            AcceptMembership => request(Method::PUT, format!("{image}/members/{two}"))
                .json(&json!({"status": "accepted"}))
                .send()
                .await
                .unwrap(),
        };
        response.status().as_u16()
    }
}

async fn every_cell_of_the_matrix_has_its_status_code(app: TestApp) {
    let callers = Callers::new(&app).await;
    let mut wrong = Vec::new();
    let mut rows = MATRIX.to_vec();
    // Anonymous callers never get past the auth layer.
    for (op, _, _) in MATRIX {
        if !rows.iter().any(|(o, c, _)| o == op && *c == Anonymous) {
            rows.push((*op, Anonymous, [401; 6]));
        }
    }
    for (op, caller, expected) in rows {
        let cells = KINDS.iter().zip(expected).map(|(kind, want)| {
            let callers = &callers;
            async move {
                let id = callers.image(*kind, op).await;
                (*kind, want, callers.perform(op, caller, &id).await)
            }
        });
        for (kind, want, got) in join_all(cells).await {
            if want != got {
                wrong.push(format!("{op:?} as {caller:?} on {kind:?}: expected {want}, got {got}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} cells differ from the matrix:\n{}", wrong.len(), wrong.join("\n"));
}

async fn each_caller_lists_exactly_the_images_it_may_see(app: TestApp) {
    let callers = Callers::new(&app).await;
    let mut kinds_by_id = BTreeMap::new();
    for kind in KINDS {
        kinds_by_id.insert(callers.image(kind, Show).await, kind);
    }
    let mut wrong = Vec::new();
    for (caller, query, expected) in LISTS {
        let listed: BTreeSet<Kind> =
            callers.of(*caller).list_ids(query).await.iter().map(|id| kinds_by_id[id]).collect();
        let expected: BTreeSet<Kind> = expected.iter().copied().collect();
        if listed != expected {
            wrong.push(format!("{caller:?} GET /v2/images{query}: expected {expected:?}, got {listed:?}"));
        }
    }
    assert_eq!(callers.of(Anonymous).get("/v2/images").await.status(), 401);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

on_every_database!(keystone; every_cell_of_the_matrix_has_its_status_code, each_caller_lists_exactly_the_images_it_may_see);
