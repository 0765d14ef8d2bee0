//! The process log of the real binary: one access line per request, plain text when written to
//! a file, JSON on request, and never a credential.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::server::Server;

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
