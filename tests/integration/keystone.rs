//! Keystone mode against a real Keystone (support/keystone.rs): tokens are validated as
//! keystonemiddleware does, and refused as Keystone-backed Glance refuses them.

use std::time::Duration;

use glint_core::config::Config;
use reqwest::Method;
use serde_json::json;

use crate::support::keystone::{Keystone, User, keystone};
use crate::support::{Backend, TestApp, expect_error};

/// An app in keystone mode on SQLite (token handling does not depend on the database; the
/// authorization matrix runs on all three), with `adjust` applied after.
async fn app(adjust: impl FnOnce(&mut Config)) -> Option<(TestApp, &'static Keystone)> {
    let keystone = keystone()?;
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        keystone.configure(config);
        adjust(config);
    })
    .await?;
    Some((app, keystone))
}

macro_rules! keystone_app {
    () => {
        keystone_app!(|_| {})
    };
    ($adjust:expr) => {
        match app($adjust).await {
            Some(started) => started,
            None => return,
        }
    };
}

#[tokio::test]
async fn a_valid_token_acts_as_its_project_user_and_roles() {
    let (app, keystone) = keystone_app!();
    let alice = app.with_token(&keystone.token(User::Alice).await);
    let image = alice.create_image(json!({"name": "mine"})).await;
    assert_eq!(image["owner"], keystone.project_of(User::Alice));
    assert_eq!(alice.list_ids("").await, vec![image["id"].as_str().unwrap().to_owned()]);
    let rita = app.with_token(&keystone.token(User::Rita).await);
    expect_error(rita.post_json("/v2/images", &json!({"name": "reader's"})).await, 403).await;
}

#[tokio::test]
async fn a_request_without_a_token_is_401_with_www_authenticate() {
    let (app, keystone) = keystone_app!();
    let response = app.anonymous().get("/v2/images").await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers().get("www-authenticate").expect("WWW-Authenticate").to_str().unwrap().to_owned();
    assert_eq!(challenge, format!("Keystone uri=\"{}\"", keystone.url));
    assert!(response.headers().get("x-openstack-request-id").is_none(), "401s of the auth layer carry no request id");
    let message = expect_error(response, 401).await;
    assert!(message.contains("could not verify that you are authorized"), "{message}");
}

#[tokio::test]
async fn the_challenge_names_www_authenticate_uri_when_configured() {
    let (app, _) =
        keystone_app!(|c: &mut Config| c.auth.keystone.www_authenticate_uri = Some("https://id.example.org/v3".into()));
    let response = app.anonymous().get("/v2/images").await;
    assert_eq!(response.headers()["www-authenticate"], "Keystone uri=\"https://id.example.org/v3\"");
}

#[tokio::test]
async fn a_malformed_token_is_401() {
    let (app, _) = keystone_app!();
    for token in ["not-a-token", "gAAAAABdeadbeef", &"x".repeat(4096)] {
        let response = app.with_token(token).get("/v2/images").await;
        assert_eq!(response.status(), 401, "token {token:.20}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
}

#[tokio::test]
async fn versions_and_healthcheck_need_no_token() {
    let (app, _) = keystone_app!();
    assert_eq!(app.anonymous().get("/versions").await.status(), 200);
    assert_eq!(app.anonymous().get("/healthcheck").await.status(), 200);
}

#[tokio::test]
async fn a_validated_token_is_served_from_the_cache_until_cache_ttl() {
    let (app, keystone) = keystone_app!();
    let token = keystone.token(User::Alice).await;
    let alice = app.with_token(&token);
    assert_eq!(alice.get("/v2/images").await.status(), 200);
    keystone.revoke(&token).await;
    // Revoked at Keystone, still trusted for up to cache_ttl (300 s): Keystone was not asked.
    assert_eq!(alice.get("/v2/images").await.status(), 200);
}

#[tokio::test]
async fn a_revoked_token_stops_working_within_cache_ttl() {
    let (app, keystone) = keystone_app!(|c: &mut Config| c.auth.keystone.cache_ttl = 1);
    let token = keystone.token(User::Alice).await;
    let alice = app.with_token(&token);
    assert_eq!(alice.get("/v2/images").await.status(), 200);
    keystone.revoke(&token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    expect_error(alice.get("/v2/images").await, 401).await;
}

#[tokio::test]
async fn an_expired_token_is_401_even_while_cached() {
    let (app, keystone) = keystone_app!();
    // Long enough for the first request to be served before expiry on a loaded machine.
    let (token, expired) = keystone.short_lived_token(User::Alice, 20).await;
    let alice = app.with_token(&token);
    assert_eq!(alice.get("/v2/images").await.status(), 200);
    tokio::time::sleep_until(expired).await;
    expect_error(alice.get("/v2/images").await, 401).await;
    // A fresh app (empty cache) hears it from Keystone itself.
    let (fresh, _) = keystone_app!();
    expect_error(fresh.with_token(&token).get("/v2/images").await, 401).await;
}

#[tokio::test]
async fn an_expired_token_with_a_valid_service_token_is_accepted() {
    let (app, keystone) = keystone_app!();
    let (token, expired) = keystone.short_lived_token(User::Alice, 20).await;
    let alice = app.with_token(&token);
    let image = alice.create_image(json!({"name": "snapshot", "disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().unwrap();
    tokio::time::sleep_until(expired).await;
    let upload = |service: &str| {
        alice
            .raw(Method::PUT, &format!("/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .header("X-Service-Token", service)
            .body("snapshot data")
    };
    expect_error(upload("not-a-token").send().await.unwrap(), 401).await;
    let bob = keystone.token(User::Bob).await;
    expect_error(upload(&bob).send().await.unwrap(), 401).await;
    // Nova's [service_user]: its service token carries the user's expired token through.
    let response = upload(&keystone.service_user_token().await).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let shown = app.with_token(&keystone.token(User::Alice).await).get_json(&format!("/v2/images/{id}")).await;
    assert_eq!(
        (shown["status"].as_str(), shown["owner"].as_str()),
        (Some("active"), Some(keystone.project_of(User::Alice)))
    );
}

#[tokio::test]
async fn a_token_of_another_project_does_not_see_private_images() {
    let (app, keystone) = keystone_app!();
    let alice = app.with_token(&keystone.token(User::Alice).await);
    let private = alice.create_image(json!({"name": "p", "visibility": "private"})).await;
    let id = private["id"].as_str().unwrap();
    let bob = app.with_token(&keystone.token(User::Bob).await);
    expect_error(bob.get(&format!("/v2/images/{id}")).await, 404).await;
    expect_error(bob.delete(&format!("/v2/images/{id}")).await, 404).await;
    assert!(bob.list_ids("").await.is_empty());
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_are_ignored() {
    let (app, keystone) = keystone_app!();
    let alice = app.with_token(&keystone.token(User::Alice).await);
    let private = alice.create_image(json!({"name": "p", "visibility": "private"})).await;
    let id = private["id"].as_str().unwrap();
    let bob_token = keystone.token(User::Bob).await;
    let spoofed = |method: Method, path: &str| {
        app.with_token(&bob_token)
            .request(method, path)
            .header("X-Project-Id", keystone.project_of(User::Alice))
            .header("X-Tenant-Id", keystone.project_of(User::Alice))
            .header("X-Roles", "admin,member,reader")
            .header("X-User-Id", "alice")
            .header("X-Identity-Status", "Confirmed")
            .header("X-Service-Roles", "service,admin")
    };
    let response = spoofed(Method::GET, &format!("/v2/images/{id}")).send().await.unwrap();
    expect_error(response, 404).await;
    let response =
        spoofed(Method::POST, "/v2/images").json(&json!({"name": "b", "visibility": "public"})).send().await.unwrap();
    expect_error(response, 403).await;
    let response = spoofed(Method::POST, "/v2/images").json(&json!({"name": "b"})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["owner"], keystone.project_of(User::Bob));
    let response = app
        .anonymous()
        .request(Method::GET, "/v2/images")
        .header("X-Project-Id", "p")
        .header("X-Roles", "admin")
        .send()
        .await
        .unwrap();
    expect_error(response, 401).await;
}

/// What Glance (oslo.policy enforcing scopes) answers a token scoped outside any project, as
/// glance-tempest-plugin's project-admin tests check with a system admin: every rule is
/// project-scoped, so images do not exist for it (404) and listing and creating are forbidden
/// (403), admin role or not. Nothing changes.
async fn a_token_outside_any_project_passes_no_rule(token: String) {
    let (app, keystone) = keystone_app!();
    let alice = app.with_token(&keystone.token(User::Alice).await);
    let private = alice.create_image(json!({"name": "p", "visibility": "private"})).await;
    let id = private["id"].as_str().unwrap();
    let public = app.with_token(&keystone.token(User::Admin).await).create_image(json!({"visibility": "public"})).await;
    let public_id = public["id"].as_str().unwrap();
    let outsider = app.with_token(&token);
    let message = expect_error(outsider.get("/v2/images").await, 403).await;
    assert!(message.contains("get_images"), "{message}");
    let message = expect_error(outsider.post_json("/v2/images", &json!({"name": "sys"})).await, 403).await;
    assert!(message.contains("add_image"), "{message}");
    for image in [id, public_id] {
        expect_error(outsider.get(&format!("/v2/images/{image}")).await, 404).await;
        expect_error(outsider.get(&format!("/v2/images/{image}/file")).await, 404).await;
        expect_error(outsider.get(&format!("/v2/images/{image}/members")).await, 404).await;
        expect_error(outsider.patch(image, &json!([{"op": "add", "path": "/x", "value": "y"}])).await, 404).await;
        let deactivate = outsider.request(Method::POST, &format!("/v2/images/{image}/actions/deactivate"));
        expect_error(deactivate.send().await.unwrap(), 404).await;
        expect_error(outsider.delete(&format!("/v2/images/{image}")).await, 404).await;
    }
    expect_error(outsider.get("/v2/tasks").await, 403).await;
    let after = alice.get_json(&format!("/v2/images/{id}")).await;
    assert_eq!((after["status"].as_str(), after.get("x")), (Some("queued"), None));
    let ids = app.with_token(&keystone.token(User::Admin).await).list_ids("").await;
    assert_eq!(ids.len(), 2, "nothing was created: {ids:?}");
}

#[tokio::test]
async fn a_system_scoped_admin_token_sees_no_image_and_may_not_create_or_list() {
    let Some(keystone) = keystone() else { return };
    a_token_outside_any_project_passes_no_rule(keystone.system_token().await).await;
}

#[tokio::test]
async fn a_domain_scoped_admin_token_sees_no_image_and_may_not_create_or_list() {
    let Some(keystone) = keystone() else { return };
    a_token_outside_any_project_passes_no_rule(keystone.domain_token().await).await;
}

#[tokio::test]
async fn an_unreachable_keystone_is_503() {
    let (app, keystone) = keystone_app!(|c: &mut Config| {
        c.auth.keystone.auth_url = "http://127.0.0.1:9/v3".into();
        c.auth.keystone.timeout = 5;
    });
    let response = app.with_token(&keystone.token(User::Alice).await).get("/v2/images").await;
    let message = expect_error(response, 503).await;
    assert!(message.contains("Keystone service is temporarily unavailable"), "{message}");
}

#[tokio::test]
async fn a_wrong_service_password_is_503_not_401() {
    let (app, keystone) = keystone_app!(|c: &mut Config| c.auth.keystone.password = "wrong".into());
    let response = app.with_token(&keystone.token(User::Alice).await).get("/v2/images").await;
    let message = expect_error(response, 503).await;
    assert!(message.contains("Keystone service is temporarily unavailable"), "{message}");
}
