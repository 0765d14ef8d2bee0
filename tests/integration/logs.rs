//! The process log of the real binary: one access line per request, plain text when written to
//! a file, JSON on request, and never a credential.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::server::Server;
use crate::support::web::{Reply, WebServer};

const TOKEN: &str = "gAAAAA-secret-token-never-logged";

/// `GET /v2/images/{id}` (404) with a token and a query string, then the server's output once
/// its access line is there.
fn one_request(config: &[(String, String)]) -> (Server, String) {
    let server = Server::start_with(config);
    let url = format!("{}/v2/images/5f3c2f1e-0000-4000-8000-000000000000?password=hunter2", server.url());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .get(&url)
            .header("x-auth-token", TOKEN)
            .header("x-project-id", "p1")
            .header("x-roles", "member")
            .header("x-openstack-request-id", "req-logged-1")
            .send()
            .await
            .expect("request")
            .status()
    });
    assert_eq!(status, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = server.output();
        if output.contains("req-logged-1") && output.contains("/v2/images/{id}") {
            return (server, output);
        }
        assert!(Instant::now() < deadline, "no access line within 10 s:\n{output}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_request_logs_one_access_line_with_route_status_request_id_and_project() {
    let (_server, output) = one_request(&[]);
    let lines: Vec<&str> =
        output.lines().filter(|l| l.contains("glint::access") && l.contains("req-logged-1")).collect();
    assert_eq!(lines.len(), 1, "{output}");
    for field in
        ["method=GET", "route=/v2/images/{id}", "status=404", "request_id=\"req-logged-1\"", "project_id=\"p1\""]
    {
        assert!(lines[0].contains(field), "{field} missing from: {}", lines[0]);
    }
    assert!(lines[0].contains("duration_ms="), "{}", lines[0]);
    assert!(!lines[0].contains("bytes_out=0"), "the error body has a length: {}", lines[0]);
}

#[test]
fn the_log_holds_no_token_no_query_string_and_no_colour_when_written_to_a_file() {
    // NO_COLOR empty counts as unset: the only reason left for no colour is the file.
    let (_server, output) = one_request(&[("NO_COLOR".into(), String::new())]);
    assert!(!output.contains(TOKEN), "{output}");
    assert!(!output.contains("hunter2"), "{output}");
    assert!(!output.contains('\u{1b}'), "ANSI escapes in a log file:\n{output}");
}

#[test]
fn json_logs_are_one_object_a_line_and_the_access_line_carries_its_fields() {
    let (_server, output) =
        one_request(&[("GLINT__LOG__FORMAT".into(), "json".into()), ("RUST_LOG".into(), "info".into())]);
    let events: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let access: Vec<&Value> =
        events.iter().filter(|e| e["target"] == "glint::access" && e["fields"]["route"] != "/healthcheck").collect();
    assert_eq!(access.len(), 1, "{output}");
    let fields = &access[0]["fields"];
    assert_eq!(fields["route"], "/v2/images/{id}");
    assert_eq!(fields["status"], 404);
    assert_eq!(fields["request_id"], "req-logged-1");
    assert_eq!(fields["project_id"], "p1");
}

#[test]
fn an_invalid_log_level_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_glint"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("GLINT__LOG__LEVEL", "glint=loud")
        .output()
        .expect("run glint");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("log.level 'glint=loud'"), "{stderr}");
}

/// A web-download URL's credentials reach the fetch and nothing a person reads: not the
/// refusal's answer or log line, not the task's input or message in either task view.
#[test]
fn url_credentials_show_in_no_log_line_answer_or_task_view() {
    const SECRET: &str = "s3cret-pa55";
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let web = runtime.block_on(WebServer::start());
    let port = web.port();
    let server = Server::start_with(&[
        ("RUST_LOG".into(), "debug".into()),
        ("GLINT__IMPORT__FILTERING__ALLOW_PRIVATE_ADDRESSES".into(), "true".into()),
        ("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".into(), format!("[{port}]")),
        ("GLINT__IMPORT__FILTERING__DISALLOWED_HOSTS".into(), "[\"127.0.0.2\"]".into()),
    ]);
    let base = server.url();
    let output = runtime.block_on(async {
        let client = reqwest::Client::new();
        let image = |name: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let body = json!({"name": name, "disk_format": "raw", "container_format": "bare"});
                let response = client.post(format!("{base}/v2/images")).json(&body).send().await.expect("create");
                let image: Value = response.json().await.expect("image");
                image["id"].as_str().expect("id").to_owned()
            }
        };
        let import = |id: String, uri: String| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let body = json!({"method": {"name": "web-download", "uri": uri}});
                let response = client
                    .post(format!("{base}/v2/images/{id}/import"))
                    .header("Accept", "application/json")
                    .json(&body)
                    .send()
                    .await
                    .expect("import");
                (response.status(), response.text().await.expect("body"))
            }
        };
        let refused = image("refused").await;
        let (status, answer) = import(refused, format!("http://user:{SECRET}@127.0.0.2:{port}/x")).await;
        assert_eq!(status, 400, "{answer}");
        assert!(!answer.contains(SECRET) && answer.contains("***"), "{answer}");
        let legacy = json!({"type": "import", "input": {"import_from": format!("http://{SECRET}@127.0.0.2:{port}/x"),
                            "import_from_format": "raw",
                            "image_properties": {"disk_format": "raw", "container_format": "bare"}}});
        let answer = client.post(format!("{base}/v2/tasks")).json(&legacy).send().await.expect("task");
        assert_eq!(answer.status(), 400);
        assert!(!answer.text().await.expect("body").contains(SECRET));
        let fetched = image("fetched").await;
        let url = web.route("/x", Reply::Status(404)).replace("http://", &format!("http://user:{SECRET}@"));
        let (status, answer) = import(fetched.clone(), url).await;
        assert_eq!(status, 202, "{answer}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let tasks = loop {
            let tasks: Value = client
                .get(format!("{base}/v2/images/{fetched}/tasks"))
                .send()
                .await
                .expect("tasks")
                .json()
                .await
                .expect("json");
            if tasks["tasks"][0]["status"] == "failure" {
                break tasks;
            }
            assert!(Instant::now() < deadline, "the import did not fail: {tasks}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(web.connections() > 0, "the worker fetched with the credentials");
        let task_id = tasks["tasks"][0]["id"].as_str().expect("task id");
        let task = client.get(format!("{base}/v2/tasks/{task_id}")).send().await.expect("task").text().await;
        for view in [tasks.to_string(), task.expect("body")] {
            assert!(!view.contains(SECRET), "{view}");
            assert!(view.contains(&format!("http://***:***@127.0.0.1:{port}/x")), "{view}");
        }
        server.output()
    });
    assert!(output.contains("web-download refused"), "{output}");
    assert!(!output.contains(SECRET), "{output}");
}
