//! Glance's default metadef policy, as a table to check against docs/glance-metadefs-api.md §3:
//! four personas (admin, member and reader of the owning project P, member of another
//! project) times three namespaces owned by P (public, private, protected and public) times
//! every operation. Every cell runs on a fresh namespace, so no operation sees another's
//! effects.

use reqwest::Method;
use serde_json::{Value, json};

use super::{create_namespace, json_of, ns_path};
use crate::support::keystone::{User, keystone};
use crate::support::{TestApp, on_every_database};

on_every_database!(
    persona_matrix_matches_glances_default_policy,
    namespace_list_shows_each_persona_what_it_may_see,
    callers_without_a_role_get_404_even_for_lists,
);

on_every_database!(keystone; the_policy_applies_to_keystone_tokens);

/// The owning project of every namespace here.
const P: &str = "owner-project";

#[derive(Clone, Copy, Debug)]
enum Persona {
    Admin,
    Member,
    Reader,
    OtherMember,
}

const PERSONAS: [Persona; 4] = [Persona::Admin, Persona::Member, Persona::Reader, Persona::OtherMember];

impl Persona {
    fn view(self, app: &TestApp) -> TestApp {
        match self {
            Persona::Admin => app.as_project(P, "admin"),
            Persona::Member => app.as_project(P, "member"),
            Persona::Reader => app.as_project(P, "reader"),
            Persona::OtherMember => app.as_project("other-project", "member"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Public,
    Private,
    Protected,
}

const KINDS: [Kind; 3] = [Kind::Public, Kind::Private, Kind::Protected];

/// One row: the operation, and the status each persona gets on the public, private and
/// protected namespace: `[admin; member; reader; other project's member]`.
type Row = (&'static str, [[u16; 3]; 4]);

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //  operation                    admin            member           reader           other member
    //                               pub  priv prot   pub  priv prot   pub  priv prot   pub  priv prot
    ("show namespace",              [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("list objects",                [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("show object",                 [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("list properties",             [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("show property",               [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("list tags",                   [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("show tag",                    [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("list associations",           [[200, 200, 200], [200, 200, 200], [200, 200, 200], [200, 404, 200]]),
    ("update namespace",            [[200, 200, 200], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("delete namespace",            [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("create object",               [[201, 201, 201], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("update object",               [[200, 200, 200], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("delete object",               [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("delete all objects",          [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("create property",             [[201, 201, 201], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("update property",             [[200, 200, 200], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("delete property",             [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("delete all properties",       [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("create tag",                  [[201, 201, 201], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("create tags (bulk)",          [[201, 201, 201], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("rename tag",                  [[200, 200, 200], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("delete tag",                  [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("delete all tags",             [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("associate resource type",     [[201, 201, 201], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
    ("dissociate resource type",    [[204, 204, 403], [403, 403, 403], [403, 403, 403], [403, 404, 403]]),
];

/// Operations without a namespace: `[admin, member, reader, other project's member]`.
#[rustfmt::skip]
const GLOBAL: &[(&str, [u16; 4])] = &[
    ("create namespace",      [201, 403, 403, 403]),
    ("list namespaces",       [200, 200, 200, 200]),
    ("list resource types",   [200, 200, 200, 200]),
    ("get a metadef schema",  [200, 200, 200, 200]),
];

/// A fresh namespace of `kind` owned by P, with an object, a property, a tag and an association.
async fn fresh(app: &TestApp, kind: Kind, n: usize) -> String {
    let name = format!("{kind:?}-{n}");
    create_namespace(
        &app.as_project(P, "admin"),
        json!({
            "namespace": name,
            "visibility": if matches!(kind, Kind::Private) { "private" } else { "public" },
            "protected": matches!(kind, Kind::Protected),
            "resource_type_associations": [{"name": "OS::Glance::Image"}],
            "properties": {"p": {"type": "string", "title": "P"}},
            "objects": [{"name": "o"}],
            "tags": [{"name": "t"}]
        }),
    )
    .await;
    name
}

async fn perform(app: &TestApp, operation: &str, ns: &str) -> u16 {
    let (method, path, body): (Method, &str, Option<Value>) = match operation {
        "show namespace" => (Method::GET, "", None),
        "list objects" => (Method::GET, "/objects", None),
        "show object" => (Method::GET, "/objects/o", None),
        "list properties" => (Method::GET, "/properties", None),
        "show property" => (Method::GET, "/properties/p", None),
        "list tags" => (Method::GET, "/tags", None),
        "show tag" => (Method::GET, "/tags/t", None),
        "list associations" => (Method::GET, "/resource_types", None),
        "update namespace" => (Method::PUT, "", Some(json!({"namespace": ns, "visibility": "public", "owner": P}))),
        "delete namespace" => (Method::DELETE, "", None),
        "create object" => (Method::POST, "/objects", Some(json!({"name": "o2"}))),
        "update object" => (Method::PUT, "/objects/o", Some(json!({"name": "o", "description": "d"}))),
        "delete object" => (Method::DELETE, "/objects/o", None),
        "delete all objects" => (Method::DELETE, "/objects", None),
        "create property" => {
            (Method::POST, "/properties", Some(json!({"name": "p2", "title": "P2", "type": "string"})))
        }
        "update property" => {
            (Method::PUT, "/properties/p", Some(json!({"name": "p", "title": "New", "type": "string"})))
        }
        "delete property" => (Method::DELETE, "/properties/p", None),
        "delete all properties" => (Method::DELETE, "/properties", None),
        "create tag" => (Method::POST, "/tags/t2", None),
        "create tags (bulk)" => (Method::POST, "/tags", Some(json!({"tags": [{"name": "t3"}]}))),
        "rename tag" => (Method::PUT, "/tags/t", Some(json!({"name": "t4"}))),
        "delete tag" => (Method::DELETE, "/tags/t", None),
        "delete all tags" => (Method::DELETE, "/tags", None),
        "associate resource type" => (Method::POST, "/resource_types", Some(json!({"name": "OS::Nova::Flavor"}))),
        "dissociate resource type" => (Method::DELETE, "/resource_types/OS::Glance::Image", None),
        other => panic!("no such operation {other}"),
    };
    let mut request = app.request(method, &ns_path(ns, path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request").status().as_u16()
}

async fn persona_matrix_matches_glances_default_policy(app: TestApp) {
    let mut mismatches = Vec::new();
    let mut n = 0;
    for (operation, expected) in MATRIX {
        for (p, persona) in PERSONAS.iter().enumerate() {
            for (k, kind) in KINDS.iter().enumerate() {
                n += 1;
                let ns = fresh(&app, *kind, n).await;
                let status = perform(&persona.view(&app), operation, &ns).await;
                if status != expected[p][k] {
                    mismatches
                        .push(format!("{operation} as {persona:?} on {kind:?}: {status}, expected {}", expected[p][k]));
                }
            }
        }
    }
    for (operation, expected) in GLOBAL {
        for (p, persona) in PERSONAS.iter().enumerate() {
            n += 1;
            let caller = persona.view(&app);
            let response = match *operation {
                "create namespace" => {
                    caller.post_json("/v2/metadefs/namespaces", &json!({"namespace": format!("new-{n}")})).await
                }
                "list namespaces" => caller.get("/v2/metadefs/namespaces").await,
                "list resource types" => caller.get("/v2/metadefs/resource_types").await,
                _ => caller.get("/v2/schemas/metadefs/namespace").await,
            };
            if response.status().as_u16() != expected[p] {
                mismatches.push(format!("{operation} as {persona:?}: {}, expected {}", response.status(), expected[p]));
            }
        }
    }
    assert!(mismatches.is_empty(), "policy differs from the table:\n{}", mismatches.join("\n"));
}

async fn namespace_list_shows_each_persona_what_it_may_see(app: TestApp) {
    for (n, kind) in KINDS.iter().enumerate() {
        fresh(&app, *kind, n).await;
    }
    let seen = |page: Value| {
        let mut names: Vec<String> = page["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    for persona in [Persona::Admin, Persona::Member, Persona::Reader] {
        assert_eq!(
            seen(persona.view(&app).get_json("/v2/metadefs/namespaces").await),
            ["Private-1", "Protected-2", "Public-0"],
            "{persona:?}"
        );
    }
    let other = Persona::OtherMember.view(&app);
    assert_eq!(seen(other.get_json("/v2/metadefs/namespaces").await), ["Protected-2", "Public-0"]);
    assert!(seen(other.get_json("/v2/metadefs/namespaces?visibility=private").await).is_empty());
    let marker = other.get("/v2/metadefs/namespaces?marker=Private-1").await;
    assert_eq!(marker.status(), 403, "an invisible marker is forbidden");
}

async fn callers_without_a_role_get_404_even_for_lists(app: TestApp) {
    fresh(&app, Kind::Public, 0).await;
    let nobody = app.as_project(P, "observer");
    for path in ["/v2/metadefs/namespaces", "/v2/metadefs/resource_types", "/v2/metadefs/namespaces/Public-0"] {
        assert_eq!(nobody.get(path).await.status(), 404, "{path}");
    }
    let created = nobody.post_json("/v2/metadefs/namespaces", &json!({"namespace": "x"})).await;
    assert_eq!(created.status(), 404);
}

/// The same rules with the caller taken from real Keystone tokens instead of trusted headers.
async fn the_policy_applies_to_keystone_tokens(app: TestApp) {
    let keystone = keystone().expect("the keystone arm started it");
    let as_user = async |user| app.with_token(&keystone.token(user).await);
    let (admin, alice, rita, bob) =
        (as_user(User::Admin).await, as_user(User::Alice).await, as_user(User::Rita).await, as_user(User::Bob).await);
    let one = keystone.project_of(User::Alice);
    for (name, visibility) in [("one-private", "private"), ("one-public", "public")] {
        let created = json_of(
            admin
                .post_json(
                    "/v2/metadefs/namespaces",
                    &json!({"namespace": name, "visibility": visibility, "owner": one}),
                )
                .await,
            201,
        )
        .await;
        assert_eq!(created["owner"], one);
    }
    assert_eq!(rita.get(&ns_path("one-private", "")).await.status(), 200, "the owner's reader reads");
    assert_eq!(bob.get(&ns_path("one-private", "")).await.status(), 404, "another project does not see it");
    assert_eq!(bob.get(&ns_path("one-public", "")).await.status(), 200);
    let rename = json!({"namespace": "one-public", "description": "mine"});
    assert_eq!(
        alice.request(Method::PUT, &ns_path("one-public", "")).json(&rename).send().await.unwrap().status(),
        403
    );
    let create = alice.post_json("/v2/metadefs/namespaces", &json!({"namespace": "alices"})).await;
    assert_eq!(create.status(), 403, "members may not create namespaces");
    assert_eq!(app.get("/v2/metadefs/namespaces").await.status(), 401, "no token");
    assert_eq!(admin.delete(&ns_path("one-private", "")).await.status(), 204);
}
