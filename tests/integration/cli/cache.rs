//! End to end: the image cache of a `glint serve` with `[cache] enabled`, managed with the
//! unmodified `glance cache-*` commands and with `glint cache ...`.

use super::*;

/// The clients against a server whose cache is on.
fn cache_clients() -> Option<Clients> {
    Clients::start_with(&[("GLINT__CACHE__ENABLED".to_owned(), "true".to_owned())])
}

/// An active image of the test disk, uploaded with glance; its id.
fn uploaded(c: &Clients, name: &str) -> String {
    let args =
        ["image-create", "--name", name, "--disk-format", "raw", "--container-format", "bare", "--file", DISK_FILE];
    prop(&properties(&c.glance(&args).success().stdout), "id").to_owned()
}

/// `glance cache-list` as (id, state, size, hits) rows.
fn cache_list(c: &Clients) -> Vec<(String, String, String, String)> {
    let output = c.glance(&["cache-list"]).success().stdout;
    let table = table_rows(&output);
    let header = table.first().unwrap_or_else(|| panic!("no table in:\n{output}"));
    assert_eq!(header[..2], ["ID".to_owned(), "State".to_owned()], "{output}");
    table[1..].iter().map(|row| (row[0].clone(), row[1].clone(), row[4].clone(), row[5].clone())).collect()
}

/// Waits until `glance cache-list` shows `id` cached; its row.
fn wait_listed_cached(c: &Clients, id: &str) -> (String, String, String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(row) = cache_list(c).into_iter().find(|row| row.0 == id && row.1 == "cached") {
            return row;
        }
        assert!(Instant::now() < deadline, "{id} never listed as cached:\n{}", c.server.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `glint cache <args>` against the server.
fn glint_cache(c: &Clients, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glint"))
        .args(["cache", "--url", &c.server.url(), "--token", TOKEN])
        .args(args)
        .env_remove("OS_IMAGE_URL")
        .env_remove("OS_AUTH_TOKEN")
        .output()
        .expect("run glint cache")
}

fn stdout_of(output: &std::process::Output) -> String {
    assert!(output.status.success(), "glint cache failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn glance_cache_queue_list_delete_and_clear() {
    let Some(c) = cache_clients() else { return };
    let id = uploaded(&c, "cached");
    assert!(cache_list(&c).is_empty());

    c.glance(&["cache-queue", &id]).success();
    let (_, _, size, hits) = wait_listed_cached(&c, &id);
    assert_eq!((size, hits), (DISK_SIZE.to_string(), "0".to_owned()));
    c.glance(&["image-download", "--file", "from-cache.raw", &id]).success();
    assert!(c.read("from-cache.raw") == disk(), "the cached copy differs from the upload");
    assert_eq!(wait_listed_cached(&c, &id).3, "1", "the download was a hit");

    c.glance(&["cache-delete", &id]).success();
    assert!(cache_list(&c).is_empty());

    c.glance(&["cache-queue", &id]).success();
    wait_listed_cached(&c, &id);
    c.glance(&["cache-clear"]).success();
    assert!(cache_list(&c).is_empty());
    c.glance(&["cache-clear", "--target", "queue"]).success();
}

#[test]
fn glint_cache_lists_queues_deletes_cleans_and_prunes() {
    let Some(c) = cache_clients() else { return };
    let id = uploaded(&c, "managed");
    assert_eq!(stdout_of(&glint_cache(&c, &["list"])), "cached images: 0\nqueued images: 0\n");
    assert_eq!(stdout_of(&glint_cache(&c, &["queue", &id])), format!("queued {id}\n"));
    wait_listed_cached(&c, &id);
    let listed = stdout_of(&glint_cache(&c, &["list"]));
    assert!(listed.starts_with("cached images: 1\n") && listed.contains(&id), "{listed}");
    assert!(listed.contains(&format!(" {DISK_SIZE} ")), "{listed}");
    assert_eq!(stdout_of(&glint_cache(&c, &["prune"])), "pruned 0 file(s), 0 byte(s)\n");
    std::fs::write(c.server.dir().join("data/cache/stray"), b"abc").expect("stray file");
    assert_eq!(stdout_of(&glint_cache(&c, &["clean"])), "cleaned 1 file(s), 3 byte(s)\n");
    assert_eq!(stdout_of(&glint_cache(&c, &["delete", &id])), format!("deleted {id}\n"));
    assert_eq!(stdout_of(&glint_cache(&c, &["delete", "--all", "--target", "queue"])), "cleared queue\n");
    assert_eq!(stdout_of(&glint_cache(&c, &["list"])), "cached images: 0\nqueued images: 0\n");

    let missing = glint_cache(&c, &["queue", "00000000-0000-0000-0000-000000000000"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("404") && stderr.contains("not found"), "{stderr}");
}
