//! `glint cache ...`: one API node's image cache managed through its cache API, as
//! glance-cache-manage does (each node has its own cache: name a node, not a load balancer).

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

/// What to do with the cache.
#[derive(Subcommand)]
pub enum CacheAction {
    /// List the node's cached images (hits, size, last access) and its queued images.
    List,
    /// Queue images for prefetching into the node's cache.
    Queue {
        /// Image ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove images from the node's cache and queue; with --all, empty its cache, its queue or both.
    Delete {
        /// Image ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Empty the cache, the queue or both (see --target).
        #[arg(long)]
        all: bool,
        /// What --all empties.
        #[arg(long, requires = "all", default_value = "both", value_parser = ["cache", "queue", "both"])]
        target: String,
    },
    /// Remove entries of images no longer active, stray files and abandoned partial files.
    Clean,
    /// Remove least recently used images until the cache fits `[cache] max_size`.
    Prune,
}

/// The node's API and the caller's token.
struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    /// `method path` with `headers`; the JSON body of a success (Null when empty), or the
    /// error line to print.
    async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Result<Value, String> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url.trim_end_matches('/')))
            .header("Accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("X-Auth-Token", token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body["message"].as_str().map_or_else(|| text.trim().to_owned(), str::to_owned);
        Err(format!("{method} {path}: {status}: {message}"))
    }
}

/// Runs `action` against the API at `url`; exit 1 when any request failed.
pub async fn run(url: &str, token: Option<String>, action: &CacheAction) -> ExitCode {
    let client = Client { http: reqwest::Client::new(), url: url.to_owned(), token };
    let mut failed = false;
    let mut report = |result: Result<Value, String>| -> Option<Value> {
        match result {
            Ok(body) => Some(body),
            Err(line) => {
                eprintln!("glint: {line}");
                failed = true;
                None
            }
        }
    };
    match action {
        CacheAction::List => {
            if let Some(body) = report(client.call(Method::GET, "/v2/cache", &[]).await) {
                print!("{}", listing(&body));
            }
        }
        CacheAction::Queue { ids } => {
            for id in ids {
                if report(client.call(Method::PUT, &format!("/v2/cache/{id}"), &[]).await).is_some() {
                    println!("queued {id}");
                }
            }
        }
        CacheAction::Delete { ids, all: false, .. } => {
            for id in ids {
                if report(client.call(Method::DELETE, &format!("/v2/cache/{id}"), &[]).await).is_some() {
                    println!("deleted {id}");
                }
            }
        }
        CacheAction::Delete { all: true, target, .. } => {
            let target = target.as_str();
            // Glance's API takes an absent header as "both" and refuses the word itself.
            let headers: &[(&str, &str)] =
                if target == "both" { &[] } else { &[("x-image-cache-clear-target", target)] };
            if report(client.call(Method::DELETE, "/v2/cache", headers).await).is_some() {
                println!("cleared {target}");
            }
        }
        CacheAction::Clean => {
            if let Some(body) = report(client.call(Method::POST, "/v2/cache/clean", &[]).await) {
                println!(
                    "cleaned {} file(s), {} byte(s)",
                    body["total_files_cleaned"].as_u64().unwrap_or(0),
                    body["total_bytes_cleaned"].as_u64().unwrap_or(0)
                );
            }
        }
        CacheAction::Prune => {
            if let Some(body) = report(client.call(Method::POST, "/v2/cache/prune", &[]).await) {
                println!(
                    "pruned {} file(s), {} byte(s)",
                    body["total_files_pruned"].as_u64().unwrap_or(0),
                    body["total_bytes_pruned"].as_u64().unwrap_or(0)
                );
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// `GET /v2/cache`'s answer as two tables.
fn listing(body: &Value) -> String {
    let empty = Vec::new();
    let cached = body["cached_images"].as_array().unwrap_or(&empty);
    let queued = body["queued_images"].as_array().unwrap_or(&empty);
    let mut out = format!("cached images: {}\n", cached.len());
    if !cached.is_empty() {
        out.push_str(&format!("{:<36}  {:>6}  {:>14}  {:<19}\n", "ID", "HITS", "SIZE", "LAST ACCESSED (UTC)"));
    }
    for entry in cached {
        let accessed = entry["last_accessed"]
            .as_f64()
            .and_then(|secs| chrono::DateTime::from_timestamp(secs as i64, 0))
            .map_or_else(|| "N/A".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%S").to_string());
        out.push_str(&format!(
            "{:<36}  {:>6}  {:>14}  {accessed}\n",
            entry["image_id"].as_str().unwrap_or_default(),
            entry["hits"].as_i64().unwrap_or(0),
            entry["size"].as_i64().unwrap_or(0),
        ));
    }
    out.push_str(&format!("queued images: {}\n", queued.len()));
    for id in queued {
        out.push_str(&format!("{}\n", id.as_str().unwrap_or_default()));
    }
    out
}
