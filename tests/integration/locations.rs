//! Where image data lives, as image responses show it: `locations` (`show_multiple_locations`)
//! and `direct_url` (`show_image_direct_url`), both hidden unless configured.

use glint_core::config::{BackendConfig, Config};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, on_every_database};

on_every_database!(both_switches_off_show_neither_field,);
on_every_database!(config = show_locations;
    locations_list_the_stored_copy_in_show_and_list,
    queued_image_shows_empty_locations,
    deactivated_image_shows_empty_locations_to_non_admins,
);
on_every_database!(config = show_direct_url;
    direct_url_is_the_stored_copy_in_show_and_list,
    queued_image_has_no_direct_url,
);
on_every_database!(config = multistore_showing_locations;
    locations_name_their_store_in_multistore_mode,
    deactivated_image_shows_no_locations_direct_url_or_stores_to_non_admins,
);

fn show_locations(config: &mut Config) {
    config.images.show_multiple_locations = true;
}

fn show_direct_url(config: &mut Config) {
    config.images.show_image_direct_url = true;
}

fn multistore_showing_locations(config: &mut Config) {
    let dir = |name: &str| {
        let path = std::env::temp_dir().join(format!("glint-locations-{name}-{}", uuid::Uuid::new_v4().simple()));
        BackendConfig::Filesystem { path, description: None }
    };
    config.storage.default = "fast".into();
    config.storage.backends = ["fast", "cheap"].into_iter().map(|name| (name.to_owned(), dir(name))).collect();
    config.images.show_multiple_locations = true;
    config.images.show_image_direct_url = true;
}

/// A new image of `app`'s project with `data` uploaded (to `store` when given).
async fn uploaded(app: &TestApp, store: Option<&str>) -> String {
    let image = app.create_image(json!({"disk_format": "raw", "container_format": "bare"})).await;
    let id = image["id"].as_str().expect("id").to_owned();
    let mut request = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(&b"data"[..]);
    if let Some(store) = store {
        request = request.header("X-Image-Meta-Store", store);
    }
    assert_eq!(request.send().await.expect("upload").status(), 204);
    id
}

/// The image `id` as `GET /v2/images/{id}` and as its entry in `GET /v2/images` show it.
async fn shown_and_listed(app: &TestApp, id: &str) -> (Value, Value) {
    let shown = app.get_json(&format!("/v2/images/{id}")).await;
    let list = app.get_json("/v2/images").await;
    let listed = list["images"].as_array().expect("images").iter().find(|i| i["id"] == id).expect("listed").clone();
    (shown, listed)
}

fn file_url(app: &TestApp, id: &str) -> String {
    format!("file://{}", app.store_path.join(id).display())
}

async fn both_switches_off_show_neither_field(app: TestApp) {
    let id = uploaded(&app, None).await;
    let (shown, listed) = shown_and_listed(&app, &id).await;
    for image in [shown, listed] {
        assert_eq!(image["status"], "active");
        assert!(image.get("locations").is_none(), "{image}");
        assert!(image.get("direct_url").is_none(), "{image}");
    }
}

async fn locations_list_the_stored_copy_in_show_and_list(app: TestApp) {
    let id = uploaded(&app, None).await;
    let (shown, listed) = shown_and_listed(&app, &id).await;
    for image in [shown, listed] {
        // One store: Glance's metadata names no store, and neither does Glint's.
        assert_eq!(image["locations"], json!([{"url": file_url(&app, &id), "metadata": {}}]));
        assert!(image.get("direct_url").is_none(), "{image}");
    }
}

async fn queued_image_shows_empty_locations(app: TestApp) {
    let created = app.create_image(json!({})).await;
    assert_eq!(created["locations"], json!([]));
    let (shown, listed) = shown_and_listed(&app, created["id"].as_str().expect("id")).await;
    assert_eq!((&shown["locations"], &listed["locations"]), (&json!([]), &json!([])));
}

async fn deactivated_image_shows_empty_locations_to_non_admins(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let id = uploaded(&owner, None).await;
    let deactivate = owner.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate"));
    assert_eq!(deactivate.send().await.expect("deactivate").status(), 204);
    let (shown, listed) = shown_and_listed(&owner, &id).await;
    assert_eq!((&shown["locations"], &listed["locations"]), (&json!([]), &json!([])));
    let admin = app.as_project("p1", "admin");
    let (shown, listed) = shown_and_listed(&admin, &id).await;
    let expected = json!([{"url": file_url(&app, &id), "metadata": {}}]);
    assert_eq!((&shown["locations"], &listed["locations"]), (&expected, &expected));
}

async fn direct_url_is_the_stored_copy_in_show_and_list(app: TestApp) {
    let id = uploaded(&app, None).await;
    let (shown, listed) = shown_and_listed(&app, &id).await;
    for image in [shown, listed] {
        assert_eq!(image["direct_url"], file_url(&app, &id));
        assert!(image.get("locations").is_none(), "{image}");
    }
}

async fn queued_image_has_no_direct_url(app: TestApp) {
    let created = app.create_image(json!({})).await;
    let (shown, listed) = shown_and_listed(&app, created["id"].as_str().expect("id")).await;
    for image in [created, shown, listed] {
        assert!(image.get("direct_url").is_none(), "{image}");
    }
}

async fn locations_name_their_store_in_multistore_mode(app: TestApp) {
    let id = uploaded(&app, Some("cheap")).await;
    let (shown, listed) = shown_and_listed(&app, &id).await;
    for image in [shown, listed] {
        let locations = image["locations"].as_array().expect("locations");
        assert_eq!(locations.len(), 1, "{image}");
        assert_eq!(locations[0]["metadata"], json!({"store": "cheap"}));
        let url = locations[0]["url"].as_str().expect("url");
        assert!(url.starts_with("file:///") && url.contains("glint-locations-cheap-") && url.ends_with(&id), "{url}");
        assert_eq!(image["direct_url"], url);
        assert_eq!(image["stores"], "cheap");
    }
}

async fn deactivated_image_shows_no_locations_direct_url_or_stores_to_non_admins(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let id = uploaded(&owner, None).await;
    let deactivate = owner.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate"));
    assert_eq!(deactivate.send().await.expect("deactivate").status(), 204);
    let (shown, listed) = shown_and_listed(&owner, &id).await;
    for image in [shown, listed] {
        assert_eq!(image["locations"], json!([]));
        assert!(image.get("direct_url").is_none() && image.get("stores").is_none(), "{image}");
    }
    let (shown, _) = shown_and_listed(&app.as_project("p1", "admin"), &id).await;
    assert_eq!(shown["locations"][0]["metadata"], json!({"store": "fast"}));
    assert_eq!(shown["stores"], "fast");
}
