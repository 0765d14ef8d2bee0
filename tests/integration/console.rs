//! The web console at `/console`: its security headers, its server-side sessions (cookie
//! flags, CSRF, sign-out) against the real test Keystone, its no-auth identity, and the whole
//! page driven in headless Chromium against a real `glint serve`.

use std::path::Path;
use std::process::Command;

use glint_core::config::Config;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::keystone::{User, keystone};
use crate::support::server::Server;
use crate::support::web::{Reply, WebServer};
use crate::support::{Backend, TestApp, venv};

/// The session cookie `response` sets, as `name=value` for a `Cookie` header.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// A console session: its cookie and CSRF token.
struct Signed {
    cookie: String,
    csrf: String,
    summary: Value,
}

async fn sign_in(app: &TestApp, user: User) -> Signed {
    let (name, password, project) = user.credentials();
    let response = app
        .anonymous()
        .request(Method::POST, "/console/login")
        .json(&json!({"user": name, "password": password, "domain": "Default", "project": project}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "sign-in");
    let cookie = session_cookie(&response);
    let summary: Value = response.json().await.unwrap();
    Signed { cookie, csrf: summary["csrf"].as_str().unwrap().to_owned(), summary }
}

impl Signed {
    fn call(&self, app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
        app.anonymous().request(method, path).header("Cookie", &self.cookie)
    }
}

async fn keystone_app(adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let keystone = keystone()?;
    TestApp::spawn_with(Backend::Sqlite, |config| {
        keystone.configure(config);
        adjust(config);
    })
    .await
}

fn assert_secure_headers(headers: &HeaderMap, what: &str) {
    let csp = headers.get("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP")).to_str().unwrap();
    for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
        assert!(csp.contains(directive), "{what}: CSP {csp:?} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
}

#[tokio::test]
async fn every_console_response_carries_a_strict_csp_and_refuses_framing() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    for path in ["/console", "/console/app.js", "/console/app.css", "/console/session"] {
        let response = app.anonymous().get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_secure_headers(response.headers(), path);
    }
    let cookie = session_cookie(&app.anonymous().get("/console/session").await);
    let listed = app.anonymous().request(Method::GET, "/console/api/v2/images").header("Cookie", &cookie);
    let listed = listed.send().await.unwrap();
    assert_eq!(listed.status(), 200);
    assert_secure_headers(listed.headers(), "an API answer through the console");
    let refused = app.anonymous().get("/console/api/v2/images").await;
    assert_eq!(refused.status(), 401, "no session");
    assert_secure_headers(refused.headers(), "a refusal");
}

#[tokio::test]
async fn the_page_has_no_inline_script_or_style() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let page = app.anonymous().get("/console").await.text().await.unwrap();
    assert_eq!(page.matches("<script").count(), page.matches("<script type=\"module\" src=\"/console/").count());
    assert!(!page.contains("<style") && !page.contains(" style=") && !page.contains(" onclick="), "inline code");
}

#[tokio::test]
async fn signing_in_keeps_the_token_server_side_behind_an_httponly_strict_cookie() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let (name, password, project) = User::Alice.credentials();
    let response = app
        .anonymous()
        .request(Method::POST, "/console/login")
        .json(&json!({"user": name, "password": password, "project": project}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(flag), "{set} lacks {flag}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let summary: Value = response.json().await.unwrap();
    assert_eq!(summary["user"], "alice");
    assert_eq!(summary["project_id"], keystone().unwrap().project_of(User::Alice));
    assert!(summary.get("token").is_none(), "the page never sees the token: {summary}");
    let signed = Signed { cookie: set.split(';').next().unwrap().to_owned(), csrf: String::new(), summary };
    let listed = signed.call(&app, Method::GET, "/console/api/v2/images").send().await.unwrap();
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn the_cookie_is_secure_when_a_trusted_proxy_says_https() {
    let Some(app) = keystone_app(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]).await else { return };
    let (name, password, project) = User::Alice.credentials();
    let response = app
        .anonymous()
        .request(Method::POST, "/console/login")
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"user": name, "password": password, "project": project}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_keystones_words_and_no_cookie() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let response = app
        .anonymous()
        .request(Method::POST, "/console/login")
        .json(&json!({"user": "alice", "password": "wrong", "project": "one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("requires authentication"), "{body}");
}

#[tokio::test]
async fn a_sign_in_that_is_not_json_is_refused() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let form = app
        .anonymous()
        .request(Method::POST, "/console/login")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("user=alice&password=alice-pw&project=one")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
}

#[tokio::test]
async fn console_changes_without_the_csrf_token_are_refused() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let alice = sign_in(&app, User::Alice).await;
    let create = |csrf: Option<&str>| {
        let mut request =
            alice.call(&app, Method::POST, "/console/api/v2/images").json(&json!({"name": "via console"}));
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.send()
    };
    assert_eq!(create(None).await.unwrap().status(), 403);
    assert_eq!(create(Some(&alice.csrf[..63])).await.unwrap().status(), 403);
    let made = create(Some(&alice.csrf)).await.unwrap();
    assert_eq!(made.status(), 201);
    let image: Value = made.json().await.unwrap();
    assert_eq!(image["owner"], alice.summary["project_id"]);
    assert_eq!(app.with_token(&keystone().unwrap().token(User::Alice).await).list_ids("").await.len(), 1);
}

#[tokio::test]
async fn the_console_obeys_the_apis_policy() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let rita = sign_in(&app, User::Rita).await;
    let refused = rita
        .call(&app, Method::POST, "/console/api/v2/images")
        .header("X-CSRF-Token", &rita.csrf)
        .json(&json!({"name": "a reader's"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "a reader cannot create images, through the console either");
    let tasks = rita.call(&app, Method::GET, "/console/api/v2/tasks").send().await.unwrap();
    assert_eq!(tasks.status(), 403);
}

#[tokio::test]
async fn identity_headers_from_the_browser_are_not_forwarded() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let admin_token = keystone().unwrap().token(User::Admin).await;
    let bob = sign_in(&app, User::Bob).await;
    let tasks =
        bob.call(&app, Method::GET, "/console/api/v2/tasks").header("X-Auth-Token", admin_token).send().await.unwrap();
    assert_eq!(tasks.status(), 403, "the session's token is used, not the one the browser sent");
}

#[tokio::test]
async fn signing_out_forgets_the_session() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let alice = sign_in(&app, User::Alice).await;
    let refused = alice.call(&app, Method::POST, "/console/logout").send().await.unwrap();
    assert_eq!(refused.status(), 403, "signing out needs the CSRF token too");
    let out =
        alice.call(&app, Method::POST, "/console/logout").header("X-CSRF-Token", &alice.csrf).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = alice.call(&app, Method::GET, "/console/api/v2/images").send().await.unwrap();
    assert_eq!(after.status(), 401);
    let summary: Value = alice.call(&app, Method::GET, "/console/session").send().await.unwrap().json().await.unwrap();
    assert_eq!(summary["signed_in"], false);
}

#[tokio::test]
async fn without_a_session_the_console_api_is_401() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let response = app.anonymous().get("/console/api/v2/images").await;
    assert_eq!(response.status(), 401);
    let summary: Value = app.anonymous().get_json("/console/session").await;
    assert_eq!((summary["mode"].as_str(), summary["signed_in"].as_bool()), (Some("keystone"), Some(false)));
}

#[tokio::test]
async fn the_project_switcher_lists_the_users_projects_and_rescopes() {
    let Some(app) = keystone_app(|_| {}).await else { return };
    let admin = sign_in(&app, User::Admin).await;
    let listed: Value = admin.call(&app, Method::GET, "/console/projects").send().await.unwrap().json().await.unwrap();
    let admin_project = keystone().unwrap().project("admin");
    assert!(listed["projects"].as_array().unwrap().iter().any(|p| p["id"] == admin_project), "{listed}");
    let switched = admin
        .call(&app, Method::POST, "/console/project")
        .header("X-CSRF-Token", &admin.csrf)
        .json(&json!({"project_id": admin_project}))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    let summary: Value = switched.json().await.unwrap();
    assert_eq!((summary["project_id"].as_str(), summary["admin"].as_bool()), (Some(admin_project), Some(true)));
}

#[tokio::test]
async fn in_noauth_mode_the_console_acts_as_the_configured_identity() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.console.noauth_project_id = Some("p-console".into());
        c.console.noauth_roles = vec!["member".into()];
    })
    .await
    else {
        return;
    };
    let response = app.anonymous().get("/console/session").await;
    let cookie = session_cookie(&response);
    let summary: Value = response.json().await.unwrap();
    assert_eq!((summary["mode"].as_str(), summary["project"].as_str()), (Some("noauth"), Some("p-console")));
    let made = app
        .anonymous()
        .request(Method::POST, "/console/api/v2/images")
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", summary["csrf"].as_str().unwrap())
        .header("X-Project-Id", "someone-else")
        .header("X-Roles", "admin")
        .json(&json!({"name": "console's"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    assert_eq!(made.json::<Value>().await.unwrap()["owner"], "p-console");
}

#[tokio::test]
async fn the_console_reaches_only_the_v2_api() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let response = app.anonymous().get("/console/session").await;
    let cookie = session_cookie(&response);
    for path in ["/console/api/versions", "/console/api/metrics", "/console/api/v2x/images"] {
        let response = app.anonymous().request(Method::GET, path).header("Cookie", &cookie).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.console.enabled = false).await else { return };
    assert_ne!(app.anonymous().get("/console").await.status(), 200);
}

/// Chromium, its driver and selenium (in the clients' virtualenv), or `None` after "skipped"
/// (outside CI; under `CI=true` a missing piece fails the test).
fn browser() -> Option<std::path::PathBuf> {
    let python = venv::clients()?.join("python");
    let missing: Vec<&str> = [
        ("chromium", Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success())),
        ("chromedriver", Command::new("chromedriver").arg("--version").output().is_ok_and(|o| o.status.success())),
        ("selenium", Command::new(&python).args(["-c", "import selenium"]).status().is_ok_and(|s| s.success())),
    ]
    .into_iter()
    .filter_map(|(what, present)| (!present).then_some(what))
    .collect();
    if missing.is_empty() {
        return Some(python);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the browser test needs {missing:?} (installed by .ci/run)");
    }
    eprintln!("skipped: the browser test needs {missing:?}");
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_works_in_a_real_browser() {
    let Some(keystone) = keystone() else { return };
    let Some(python) = browser() else { return };
    let web = WebServer::start().await;
    let disk: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let url = web.route("/imported.raw", Reply::Bytes(disk));
    let mut env = keystone.server_env();
    env.extend([
        ("GLINT__IMPORT__FILTERING__ALLOW_PRIVATE_ADDRESSES".to_owned(), "true".to_owned()),
        ("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".to_owned(), format!("[{}]", web.port())),
    ]);
    let server = tokio::task::spawn_blocking(move || Server::start_with(&env)).await.unwrap();
    let shots = tempfile::Builder::new().prefix("console-browser-").tempdir().unwrap();
    // Outside the screenshots, so a kept directory holds only them.
    let data = tempfile::tempdir().unwrap();
    let upload = data.path().join("upload.raw");
    std::fs::write(&upload, (0..8u32 << 20).map(|i| (i % 241) as u8).collect::<Vec<u8>>()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/console_browser.py");
    let (alice, bob) = (User::Alice.credentials(), User::Bob.credentials());
    let mut command = Command::new(python);
    command
        .arg(script)
        .env("CONSOLE_URL", format!("{}/console", server.url()))
        .env("SHOTS", shots.path())
        .env("UPLOAD_FILE", &upload)
        .env("IMPORT_URL", url)
        .env("ALICE", format!("{}:{}:{}", alice.0, alice.1, alice.2))
        .env("BOB", format!("{}:{}:{}", bob.0, bob.1, bob.2))
        .env("BOB_PROJECT", keystone.project_of(User::Bob));
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("run console_browser.py");
    let report = format!(
        "{}\n{}\nscreenshots kept in {}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        shots.path().display(),
        server.output().lines().rev().take(40).collect::<Vec<_>>().join("\n"),
    );
    // Screenshots are kept when the run fails, or when GLINT_KEEP_SCREENSHOTS asks for them.
    let kept = shots.keep();
    if output.status.success() && std::env::var_os("GLINT_KEEP_SCREENSHOTS").is_none() {
        let _ = std::fs::remove_dir_all(&kept);
    }
    assert!(output.status.success(), "the browser run failed:\n{report}");
    println!("{report}");
}
