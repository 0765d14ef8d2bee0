//! `GET /metrics` of the real binary: counters read during and after real uploads, downloads
//! and imports, by value; the exposition as `promtool check metrics` reads it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glint_core::task::repo as tasks;
use glint_core::task::{Task, TaskStatus, TaskType};
use serde_json::{Value, json};

use crate::support::cluster::{Cluster, SlowServer, Spec};
use crate::support::server::Server;
use crate::support::{TestApp, on_every_database};

const MIB: usize = 1 << 20;

on_every_database!(idle; tasks_by_state_and_the_outbox_are_read_from_the_database_at_scrape_time);

/// One scrape: every sample by metric name and label set.
struct Scrape {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(sample).collect();
        Scrape { text, samples }
    }

    /// The value of `name` with exactly `labels`; 0 when the series does not exist (yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.samples.iter().find(|(n, l, _)| n == name && *l == wanted).map_or(0.0, |(_, _, v)| *v)
    }
}

/// `name{k="v",...} value`, label values unescaped.
fn sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
    let Some((name, labels)) = series.split_once('{') else { return (series.to_owned(), BTreeMap::new(), value) };
    let mut parsed = BTreeMap::new();
    let mut rest = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line}"));
        let mut label = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => label.push(chars.next().map_or('\\', |(_, c)| if c == 'n' { '\n' } else { c })),
                Some((i, '"')) => break i,
                Some((_, c)) => label.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        parsed.insert(key.to_owned(), label);
        rest = after[end + 1..].trim_start_matches(',');
    }
    (name.to_owned(), parsed, value)
}

async fn scrape(client: &reqwest::Client, server: &Server) -> Scrape {
    let response = client.get(format!("{}/metrics", server.url())).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    Scrape::parse(response.text().await.expect("body"))
}

/// Scrapes until `ready` holds, for at most 20 s.
async fn scrape_until(
    client: &reqwest::Client,
    server: &Server,
    what: &str,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scraped = scrape(client, server).await;
        if ready(&scraped) {
            return scraped;
        }
        assert!(Instant::now() < deadline, "{what} never showed in the metrics:\n{}", scraped.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_image(client: &reqwest::Client, server: &Server, disk_format: &str) -> String {
    let body = json!({"disk_format": disk_format, "container_format": "bare"});
    let response = client.post(format!("{}/v2/images", server.url())).json(&body).send().await.expect("create");
    assert_eq!(response.status(), 201);
    let image: Value = response.json().await.expect("json");
    image["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn upload_and_download_bytes_and_requests_by_route_template_are_counted_as_they_happen() {
    let server = Server::start_with(&[]);
    let client = reqwest::Client::new();
    let id = create_image(&client, &server, "raw").await;

    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let upload = tokio::spawn(
        client
            .put(format!("{}/v2/images/{id}/file", server.url()))
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tx.send(Ok(vec![7u8; MIB])).await.expect("send");
    let during = scrape_until(&client, &server, "the first MiB of the upload", |s| {
        s.value("glint_image_data_bytes_total", &[("flow", "uploaded")]) >= MIB as f64
    })
    .await;
    let put = [("route", "/v2/images/{id}/file"), ("method", "PUT"), ("status", "204")];
    assert_eq!(during.value("glint_http_requests_total", &put), 0.0, "counted before its response");
    tx.send(Ok(vec![7u8; 2 * MIB])).await.expect("send");
    drop(tx);
    assert_eq!(upload.await.expect("join").expect("upload").status(), 204);

    let data = client.get(format!("{}/v2/images/{id}/file", server.url())).send().await.expect("download");
    assert_eq!(data.bytes().await.expect("data").len(), 3 * MIB);
    for _ in 0..2 {
        let shown = client.get(format!("{}/v2/images/{id}", server.url())).send().await.expect("show");
        assert_eq!(shown.status(), 200);
    }
    let missing = client.get(format!("{}/v2/images/{}", server.url(), uuid::Uuid::new_v4())).send().await;
    assert_eq!(missing.expect("show").status(), 404);

    let after = scrape(&client, &server).await;
    assert_eq!(after.value("glint_image_data_bytes_total", &[("flow", "uploaded")]), (3 * MIB) as f64);
    assert_eq!(after.value("glint_image_data_bytes_total", &[("flow", "downloaded")]), (3 * MIB) as f64);
    assert_eq!(after.value("glint_http_requests_total", &put), 1.0);
    let show = |status| [("route", "/v2/images/{id}"), ("method", "GET"), ("status", status)];
    assert_eq!(after.value("glint_http_requests_total", &show("200")), 2.0);
    assert_eq!(after.value("glint_http_requests_total", &show("404")), 1.0);
    let timing = [("route", "/v2/images/{id}"), ("method", "GET")];
    assert_eq!(after.value("glint_http_request_duration_seconds_count", &timing), 3.0);
    assert!(!after.text.contains(&id), "a raw path or id became a label:\n{}", after.text);
    assert_eq!(after.value("glint_tasks", &[("status", "processing")]), 0.0);
    assert!(after.text.contains("glint_db_pool_connections{state=\"in_use\"}"), "{}", after.text);
}

#[tokio::test]
async fn imports_are_counted_by_method_and_outcome_and_running_tasks_by_state() {
    let image_data = Arc::new(vec![0u8; 256 * 1024]);
    let web = SlowServer::start(image_data.clone(), 128 * 1024).await;
    let port = web.base.rsplit(':').next().expect("port").to_owned();
    let server = Server::start_with(&[
        ("GLINT__IMPORT__FILTERING__ALLOW_PRIVATE_ADDRESSES".into(), "true".into()),
        ("GLINT__IMPORT__FILTERING__ALLOWED_PORTS".into(), format!("[{port}]")),
    ]);
    let client = reqwest::Client::new();

    let fetched = create_image(&client, &server, "raw").await;
    let import = json!({"method": {"name": "web-download", "uri": format!("{}/disk.raw", web.base)}});
    let accepted = client.post(format!("{}/v2/images/{fetched}/import", server.url())).json(&import).send().await;
    assert_eq!(accepted.expect("import").status(), 202);
    let started = [("method", "web-download")];
    // The claim marks the task processing in the database a moment before the worker counts
    // the start (it first checks the project's share of workers): wait for both.
    let during = scrape_until(&client, &server, "a running web-download", |s| {
        s.value("glint_tasks", &[("status", "processing")]) == 1.0
            && s.value("glint_import_tasks_started_total", &started) == 1.0
    })
    .await;
    assert_eq!(during.value("glint_import_tasks_succeeded_total", &started), 0.0);

    // Zeros declared qcow2: format inspection refuses them and the import fails.
    let refused = create_image(&client, &server, "qcow2").await;
    let staged = client
        .put(format!("{}/v2/images/{refused}/stage", server.url()))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 65536])
        .send()
        .await;
    assert_eq!(staged.expect("stage").status(), 204);
    let import = json!({"method": {"name": "glance-direct"}});
    let accepted = client.post(format!("{}/v2/images/{refused}/import", server.url())).json(&import).send().await;
    assert_eq!(accepted.expect("import").status(), 202);

    let after = scrape_until(&client, &server, "both imports ending", |s| {
        s.value("glint_import_tasks_succeeded_total", &[("method", "web-download")]) == 1.0
            && s.value("glint_import_tasks_failed_total", &[("method", "glance-direct"), ("reason", "aborted")]) == 1.0
    })
    .await;
    assert_eq!(after.value("glint_import_tasks_started_total", &[("method", "glance-direct")]), 1.0);
    assert_eq!(after.value("glint_format_inspection_refusals_total", &[("reason", "mismatch")]), 1.0);
    assert_eq!(after.value("glint_image_data_bytes_total", &[("flow", "staged")]), 65536.0);
    let succeeded = [("method", "web-download"), ("outcome", "succeeded")];
    assert_eq!(after.value("glint_import_task_duration_seconds_count", &succeeded), 1.0);
    assert!(after.value("glint_import_task_duration_seconds_sum", &succeeded) >= 1.0, "a 2 s download");
    assert_eq!(after.value("glint_worker_claims_total", &[]), 2.0);
    assert_eq!(after.value("glint_worker_retries_total", &[]), 0.0);
    for status in ["pending", "processing"] {
        assert_eq!(after.value("glint_tasks", &[("status", status)]), 0.0, "{status}");
    }
    assert_eq!(after.value("glint_outbox_backlog", &[]), 0.0);
    assert_eq!(after.value("glint_outbox_oldest_unpublished_age_seconds", &[]), 0.0);
}

/// Three tasks recorded a day ago and never published; one claimed since.
async fn tasks_by_state_and_the_outbox_are_read_from_the_database_at_scrape_time(app: TestApp) {
    let day_ago = glint_core::db::now() - chrono::Duration::days(1);
    for n in 1..=3 {
        let task = Task {
            id: format!("aaaaaaaa-0000-4000-8000-00000000000{n}"),
            task_type: TaskType::ApiImageImport,
            status: TaskStatus::Pending,
            owner: "p1".into(),
            expires_at: None,
            image_id: None,
            request_id: None,
            user_id: None,
            created_at: day_ago,
            updated_at: day_ago,
            input: Some(json!({})),
            result: None,
            message: String::new(),
        };
        tasks::insert(&app.db, &task).await.expect("insert");
    }
    let claimed = tasks::claim(&app.db, "aaaaaaaa-0000-4000-8000-000000000001", "w1", Duration::from_secs(60)).await;
    assert!(claimed.expect("claim").is_some());

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let scraped = Scrape::parse(response.text().await.expect("body"));
    assert_eq!(scraped.value("glint_tasks", &[("status", "pending")]), 2.0, "{}", scraped.text);
    assert_eq!(scraped.value("glint_tasks", &[("status", "processing")]), 1.0);
    assert_eq!(scraped.value("glint_outbox_backlog", &[]), 2.0);
    let age = scraped.value("glint_outbox_oldest_unpublished_age_seconds", &[]);
    assert!((86_400.0..86_500.0).contains(&age), "oldest unpublished task is {age} s old");
    assert!(scraped.value("glint_db_pool_connections", &[("state", "idle")]) >= 0.0);
    assert!(scraped.text.contains("glint_db_pool_connections{state=\"in_use\"}"), "{}", scraped.text);
}

#[tokio::test]
async fn a_worker_process_serves_its_own_metrics_on_metrics_bind() {
    let Some(cluster) = Cluster::start(Spec { apis: 1, workers: 1, ..Spec::default() }).await else { return };
    let id = cluster.create_image(0, &json!({"disk_format": "raw", "container_format": "bare"})).await;
    cluster.stage(0, &id, vec![3u8; 100_000]).await;
    let accepted = cluster.import(0, &id, &json!({"method": {"name": "glance-direct"}})).await;
    assert_eq!(accepted.expect("import").status(), 202);
    cluster.wait_active(&id, Duration::from_secs(30)).await;

    let read = |url: String| {
        let http = cluster.http.clone();
        async move { Scrape::parse(http.get(url).send().await.expect("scrape").text().await.expect("body")) }
    };
    let glance_direct = [("method", "glance-direct")];
    let worker = read(cluster.worker_metrics_url(0)).await;
    assert_eq!(worker.value("glint_import_tasks_succeeded_total", &glance_direct), 1.0, "{}", worker.text);
    assert_eq!(worker.value("glint_worker_claims_total", &[]), 1.0);
    assert_eq!(worker.value("glint_tasks", &[("status", "processing")]), 0.0);
    // The API counts what it served and runs no task.
    let api = read(format!("{}/metrics", cluster.url(0))).await;
    assert_eq!(api.value("glint_image_data_bytes_total", &[("flow", "staged")]), 100_000.0);
    assert_eq!(api.value("glint_import_tasks_succeeded_total", &glance_direct), 0.0);
    assert_eq!(worker.value("glint_image_data_bytes_total", &[("flow", "staged")]), 0.0);
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let Some(promtool) = promtool() else { return };
    let server = Server::start_with(&[]);
    let client = reqwest::Client::new();
    let id = create_image(&client, &server, "raw").await;
    let uploaded = client
        .put(format!("{}/v2/images/{id}/file", server.url()))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8; 4096])
        .send()
        .await;
    assert_eq!(uploaded.expect("upload").status(), 204);
    client.get(format!("{}/v2/images/{id}/file", server.url())).send().await.expect("download");
    client.get(format!("{}/no/such/path", server.url())).send().await.expect("unmatched");
    let scraped = scrape(&client, &server).await;

    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), scraped.text.as_bytes()).expect("feed");
    let output = check.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        scraped.text
    );
}

/// `promtool` from PATH (Debian's prometheus package; .ci/run installs it). Outside CI a
/// machine without it skips the check; under `CI=true` it fails.
fn promtool() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("promtool")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "promtool is required under CI=true");
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
    }
    found
}
