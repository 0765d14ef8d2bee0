//! GET /v2/images: filters, sorting, pagination and visibility.

use serde_json::json;

use crate::support::rows::{add_member, set_columns};
use crate::support::{TestApp, expect_error, ids, on_every_database};

on_every_database!(
    list_pages_follow_next_links_until_the_end,
    list_first_link_keeps_the_query_without_marker,
    list_limit_zero_is_an_empty_page_without_next,
    list_limit_must_be_a_non_negative_integer,
    list_limit_is_clamped_to_api_limit_max,
    list_with_unknown_marker_is_400,
    list_with_marker_of_invisible_image_is_403,
    list_sorts_by_sort_key_and_sort_dir,
    list_sorts_with_sort_parameter,
    list_sorts_nulls_as_empty,
    list_with_bad_sort_parameters_is_400,
    list_defaults_to_created_at_descending,
    list_filters_by_name_with_eq_and_in,
    list_with_unknown_operator_is_400,
    list_filters_by_status_and_formats,
    list_filters_by_repeated_tags_with_and_semantics,
    list_filters_by_extra_property,
    list_filters_by_size_range,
    list_filters_by_created_at_and_updated_at_operators,
    list_hides_os_hidden_images_by_default,
    list_filters_by_protected,
    list_filters_by_owner,
    list_excludes_deleted_and_killed_images,
    list_visibility_rules_for_other_projects,
    list_shared_images_by_member_status,
    list_with_bad_visibility_or_member_status_is_400,
    list_changes_since_is_400,
    list_by_caller_without_roles_is_403,
    list_with_too_many_filters_tags_values_or_sort_keys_is_400,
    list_with_the_most_filters_tags_and_sort_keys_allowed_finds_the_image,
);

async fn create_named(app: &TestApp, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let image = app.create_image(json!({"name": name})).await;
        out.push(image["id"].as_str().unwrap().to_owned());
    }
    out
}

async fn list_pages_follow_next_links_until_the_end(app: TestApp) {
    let created = create_named(&app, &["a", "b", "c", "d", "e"]).await;
    let mut seen = Vec::new();
    let mut path = "/v2/images?limit=2&sort_key=name&sort_dir=asc".to_owned();
    let mut pages = 0;
    loop {
        let body = app.get_json(&path).await;
        pages += 1;
        seen.extend(ids(&body));
        match body["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with("/v2/images?limit=2&sort_key=name&sort_dir=asc&marker="), "{next}");
                path = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen, created);
    assert_eq!(pages, 3, "a full page is followed by another, a short one ends");
    // A final full page is followed by one empty page, as upstream does.
    let four = app.get_json("/v2/images?limit=4&sort=name:asc").await;
    let next = four["next"].as_str().unwrap().to_owned();
    let last = app.get_json(&next).await;
    assert_eq!(ids(&last).len(), 1);
    assert!(last.get("next").is_none());
}

async fn list_first_link_keeps_the_query_without_marker(app: TestApp) {
    let created = create_named(&app, &["a", "b"]).await;
    let body = app.get_json(&format!("/v2/images?name=in:a,b&limit=1&marker={}&sort=name:desc", created[1])).await;
    assert_eq!(body["first"], "/v2/images?name=in%3Aa%2Cb&limit=1&sort=name%3Adesc");
    assert_eq!(body["schema"], "/v2/schemas/images");
    assert_eq!(ids(&body), vec![created[0].clone()]);
    let plain = app.get_json("/v2/images").await;
    assert_eq!(plain["first"], "/v2/images");
}

async fn list_limit_zero_is_an_empty_page_without_next(app: TestApp) {
    create_named(&app, &["a"]).await;
    let body = app.get_json("/v2/images?limit=0").await;
    assert!(ids(&body).is_empty());
    assert!(body.get("next").is_none());
}

async fn list_limit_must_be_a_non_negative_integer(app: TestApp) {
    let message = expect_error(app.get("/v2/images?limit=abc").await, 400).await;
    assert!(message.contains("limit param must be an integer"), "{message}");
    let message = expect_error(app.get("/v2/images?limit=-1").await, 400).await;
    assert!(message.contains("limit param must be positive"), "{message}");
}

async fn list_limit_is_clamped_to_api_limit_max(app: TestApp) {
    create_named(&app, &["a", "b", "c"]).await;
    // 1,000 images would make this slow; the clamp is exercised with the default page instead.
    let body = app.get_json("/v2/images?limit=99999999").await;
    assert_eq!(ids(&body).len(), 3);
    assert!(body.get("next").is_none());
}

async fn list_with_unknown_marker_is_400(app: TestApp) {
    create_named(&app, &["a"]).await;
    expect_error(app.get("/v2/images?marker=5f3c2f1e-0000-4000-8000-000000000000").await, 400).await;
    let deleted = create_named(&app, &["b"]).await;
    app.delete(&format!("/v2/images/{}", deleted[0])).await;
    expect_error(app.get(&format!("/v2/images?marker={}", deleted[0])).await, 400).await;
}

async fn list_with_marker_of_invisible_image_is_403(app: TestApp) {
    let private = app.as_project("p1", "member").create_image(json!({"visibility": "private"})).await;
    let response =
        app.as_project("p2", "member").get(&format!("/v2/images?marker={}", private["id"].as_str().unwrap())).await;
    expect_error(response, 403).await;
}

async fn list_sorts_by_sort_key_and_sort_dir(app: TestApp) {
    let created = create_named(&app, &["b", "c", "a"]).await;
    let asc = app.list_ids("?sort_key=name&sort_dir=asc").await;
    assert_eq!(asc, vec![created[2].clone(), created[0].clone(), created[1].clone()]);
    let desc = app.list_ids("?sort_key=name").await;
    assert_eq!(desc, vec![created[1].clone(), created[0].clone(), created[2].clone()]);
    for (i, id) in created.iter().enumerate() {
        set_columns(&app, id, &format!("min_disk = {i}, size = {}", 10 - i)).await;
    }
    let by_size = app.list_ids("?sort_key=size&sort_key=name&sort_dir=asc&sort_dir=asc").await;
    assert_eq!(by_size, vec![created[2].clone(), created[1].clone(), created[0].clone()]);
}

async fn list_sorts_with_sort_parameter(app: TestApp) {
    let created = create_named(&app, &["x", "x", "y"]).await;
    set_columns(&app, &created[0], "size = 5").await;
    set_columns(&app, &created[1], "size = 7").await;
    set_columns(&app, &created[2], "size = 1").await;
    let ordered = app.list_ids("?sort=name:asc,size:desc").await;
    assert_eq!(ordered, vec![created[1].clone(), created[0].clone(), created[2].clone()]);
    let default_dir = app.list_ids("?sort=size").await;
    assert_eq!(default_dir, vec![created[1].clone(), created[0].clone(), created[2].clone()]);
}

async fn list_sorts_nulls_as_empty(app: TestApp) {
    let named = app.create_image(json!({"name": "a"})).await;
    let unnamed = app.create_image(json!({})).await;
    let asc = app.list_ids("?sort_key=name&sort_dir=asc").await;
    assert_eq!(asc, vec![unnamed["id"].as_str().unwrap().to_owned(), named["id"].as_str().unwrap().to_owned()]);
}

async fn list_with_bad_sort_parameters_is_400(app: TestApp) {
    for query in [
        "sort_key=owner",
        "sort_dir=sideways",
        "sort=name:up",
        "sort=bogus",
        "sort=name&sort_key=name",
        "sort_key=name&sort_key=size&sort_key=id&sort_dir=asc&sort_dir=desc",
    ] {
        expect_error(app.get(&format!("/v2/images?{query}")).await, 400).await;
    }
}

async fn list_defaults_to_created_at_descending(app: TestApp) {
    let created = create_named(&app, &["old", "new"]).await;
    set_columns(&app, &created[0], "created_at = '2020-01-01 00:00:00'").await;
    assert_eq!(app.list_ids("").await, vec![created[1].clone(), created[0].clone()]);
    assert_eq!(app.list_ids("?sort_dir=asc").await, vec![created[0].clone(), created[1].clone()]);
}

async fn list_filters_by_name_with_eq_and_in(app: TestApp) {
    let created = create_named(&app, &["glass, darkly", "share me", "other", "a:b"]).await;
    assert_eq!(app.list_ids("?name=other").await, vec![created[2].clone()]);
    assert_eq!(app.list_ids("?name=eq:other").await, vec![created[2].clone()]);
    assert_eq!(app.list_ids("?name=eq:a:b").await, vec![created[3].clone()]);
    let mut both = app.list_ids("?name=in:%22glass,%20darkly%22,share%20me").await;
    both.sort();
    let mut expected = vec![created[0].clone(), created[1].clone()];
    expected.sort();
    assert_eq!(both, expected);
    assert_eq!(app.list_ids(&format!("?id=in:{},{}", created[2], created[3])).await.len(), 2);
}

async fn list_with_unknown_operator_is_400(app: TestApp) {
    expect_error(app.get("/v2/images?name=a:b").await, 400).await;
    expect_error(app.get("/v2/images?status=like:queued").await, 400).await;
}

async fn list_filters_by_status_and_formats(app: TestApp) {
    let qcow = app.create_image(json!({"disk_format": "qcow2", "container_format": "bare"})).await;
    let raw = app.create_image(json!({"disk_format": "raw", "container_format": "ovf"})).await;
    set_columns(&app, raw["id"].as_str().unwrap(), "status = 'active'").await;
    assert_eq!(app.list_ids("?disk_format=qcow2").await, vec![qcow["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?container_format=ovf").await, vec![raw["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?status=active").await, vec![raw["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?status=in:active,queued").await.len(), 2);
}

async fn list_filters_by_repeated_tags_with_and_semantics(app: TestApp) {
    let both = app.create_image(json!({"tags": ["a", "b"]})).await;
    app.create_image(json!({"tags": ["a"]})).await;
    app.create_image(json!({"tags": ["b", "c"]})).await;
    assert_eq!(app.list_ids("?tag=a&tag=b").await, vec![both["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?tag=a").await.len(), 2);
    assert!(app.list_ids("?tag=z").await.is_empty());
}

async fn list_filters_by_extra_property(app: TestApp) {
    let backup = app
        .create_image(json!({"image_type": "backup", "backup_type": "daily", "instance_uuid": "9c2a0000-0000-4000-8000-000000000000"}))
        .await;
    app.create_image(json!({"image_type": "backup", "backup_type": "weekly"})).await;
    app.create_image(json!({"image_type": "snapshot"})).await;
    let found = app
        .list_ids("?image_type=backup&backup_type=daily&instance_uuid=9c2a0000-0000-4000-8000-000000000000&sort_key=created_at&sort_dir=desc&limit=2")
        .await;
    assert_eq!(found, vec![backup["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?image_type=backup").await.len(), 2);
    assert_eq!(app.list_ids("?min_ram=0").await.len(), 3);
    expect_error(app.get("/v2/images?min_ram=lots").await, 400).await;
}

async fn list_filters_by_size_range(app: TestApp) {
    let created = create_named(&app, &["small", "medium", "large"]).await;
    for (id, size) in created.iter().zip([10, 100, 1000]) {
        set_columns(&app, id, &format!("size = {size}, virtual_size = {}", size * 2)).await;
    }
    assert_eq!(app.list_ids("?size_min=100&size_max=100").await, vec![created[1].clone()]);
    assert_eq!(app.list_ids("?size_min=50").await.len(), 2);
    assert_eq!(app.list_ids("?virtual_size_max=200").await.len(), 2);
    expect_error(app.get("/v2/images?size_min=big").await, 400).await;
    expect_error(app.get("/v2/images?size_max=1.5").await, 400).await;
}

async fn list_filters_by_created_at_and_updated_at_operators(app: TestApp) {
    let created = create_named(&app, &["2020", "2022", "2024"]).await;
    for (id, year) in created.iter().zip([2020, 2022, 2024]) {
        set_columns(&app, id, &format!("created_at = '{year}-06-01 12:00:00', updated_at = '{year}-06-02 12:00:00'"))
            .await;
    }
    assert_eq!(app.list_ids("?created_at=gt:2021-01-01T00:00:00Z").await.len(), 2);
    assert_eq!(app.list_ids("?created_at=gte:2022-06-01T12:00:00Z").await.len(), 2);
    assert_eq!(app.list_ids("?created_at=lt:2022-06-01T12:00:00Z").await, vec![created[0].clone()]);
    assert_eq!(app.list_ids("?created_at=lte:2022-06-01T12:00:00Z").await.len(), 2);
    assert_eq!(app.list_ids("?created_at=2022-06-01T12:00:00Z").await, vec![created[1].clone()]);
    assert_eq!(app.list_ids("?created_at=eq:2022-06-01T14:00:00%2B02:00").await, vec![created[1].clone()]);
    assert_eq!(app.list_ids("?created_at=neq:2022-06-01T12:00:00Z").await.len(), 2);
    assert_eq!(app.list_ids("?updated_at=gt:2024-01-01T00:00:00Z").await, vec![created[2].clone()]);
    expect_error(app.get("/v2/images?created_at=bogus:2022-06-01T12:00:00Z").await, 400).await;
    expect_error(app.get("/v2/images?created_at=gt:last%20tuesday").await, 400).await;
}

async fn list_hides_os_hidden_images_by_default(app: TestApp) {
    let hidden = app.create_image(json!({"os_hidden": true})).await;
    let shown = app.create_image(json!({})).await;
    assert_eq!(app.list_ids("").await, vec![shown["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?os_hidden=false").await, vec![shown["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?os_hidden=TRUE").await, vec![hidden["id"].as_str().unwrap().to_owned()]);
    expect_error(app.get("/v2/images?os_hidden=maybe").await, 400).await;
}

async fn list_filters_by_protected(app: TestApp) {
    let protected = app.create_image(json!({"protected": true})).await;
    app.create_image(json!({})).await;
    assert_eq!(app.list_ids("?protected=true").await, vec![protected["id"].as_str().unwrap().to_owned()]);
    assert_eq!(app.list_ids("?protected=false").await.len(), 1);
    expect_error(app.get("/v2/images?protected=True").await, 400).await;
}

async fn list_filters_by_owner(app: TestApp) {
    let admin = app.as_project("adm", "admin");
    let mine = admin.create_image(json!({"visibility": "public", "owner": "p1"})).await;
    admin.create_image(json!({"visibility": "public"})).await;
    assert_eq!(app.list_ids("?owner=p1").await, vec![mine["id"].as_str().unwrap().to_owned()]);
}

async fn list_excludes_deleted_and_killed_images(app: TestApp) {
    let created = create_named(&app, &["live", "deleted", "killed"]).await;
    app.delete(&format!("/v2/images/{}", created[1])).await;
    set_columns(&app, &created[2], "status = 'killed'").await;
    assert_eq!(app.list_ids("?visibility=all").await, vec![created[0].clone()]);
}

async fn list_visibility_rules_for_other_projects(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    let admin = app.as_project("adm", "admin");
    let public = admin.create_image(json!({"name": "public", "visibility": "public"})).await;
    let private = p1.create_image(json!({"name": "private", "visibility": "private"})).await;
    let shared = p1.create_image(json!({"name": "shared", "visibility": "shared"})).await;
    let community = p1.create_image(json!({"name": "community", "visibility": "community"})).await;
    let id = |v: &serde_json::Value| v["id"].as_str().unwrap().to_owned();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    let p2 = app.as_project("p2", "reader");
    assert_eq!(p2.list_ids("").await, vec![id(&public)]);
    assert_eq!(p2.list_ids("?visibility=community").await, vec![id(&community)]);
    assert_eq!(sorted(p2.list_ids("?visibility=all").await), sorted(vec![id(&public), id(&community)]));
    assert!(p2.list_ids("?visibility=private").await.is_empty());
    assert!(p2.list_ids("?visibility=shared").await.is_empty());

    assert_eq!(sorted(p1.list_ids("").await), sorted(vec![id(&public), id(&private), id(&shared), id(&community)]));
    assert_eq!(p1.list_ids("?visibility=private").await, vec![id(&private)]);
    assert_eq!(p1.list_ids("?visibility=shared").await, vec![id(&shared)]);

    // Admins see every project's images, but others' community images only when asked.
    assert_eq!(sorted(admin.list_ids("").await), sorted(vec![id(&public), id(&private), id(&shared)]));
    assert_eq!(admin.list_ids("?visibility=all").await.len(), 4);
    assert_eq!(admin.list_ids("?visibility=private").await, vec![id(&private)]);
}

async fn list_shared_images_by_member_status(app: TestApp) {
    let p1 = app.as_project("p1", "member");
    let accepted = p1.create_image(json!({"name": "accepted"})).await;
    let pending = p1.create_image(json!({"name": "pending"})).await;
    let rejected = p1.create_image(json!({"name": "rejected"})).await;
    let id = |v: &serde_json::Value| v["id"].as_str().unwrap().to_owned();
    add_member(&app, &id(&accepted), "p2", "accepted").await;
    add_member(&app, &id(&pending), "p2", "pending").await;
    add_member(&app, &id(&rejected), "p2", "rejected").await;
    let p2 = app.as_project("p2", "member");
    assert_eq!(p2.list_ids("").await, vec![id(&accepted)]);
    assert_eq!(p2.list_ids("?member_status=pending").await, vec![id(&pending)]);
    assert_eq!(p2.list_ids("?member_status=rejected&visibility=shared").await, vec![id(&rejected)]);
    assert_eq!(p2.list_ids("?member_status=all").await.len(), 3);
    assert!(app.as_project("p3", "member").list_ids("?member_status=all").await.is_empty());
}

async fn list_with_bad_visibility_or_member_status_is_400(app: TestApp) {
    expect_error(app.get("/v2/images?visibility=everyone").await, 400).await;
    expect_error(app.get("/v2/images?member_status=maybe").await, 400).await;
}

async fn list_changes_since_is_400(app: TestApp) {
    expect_error(app.get("/v2/images?changes-since=2020-01-01T00:00:00Z").await, 400).await;
}

async fn list_by_caller_without_roles_is_403(app: TestApp) {
    expect_error(app.as_project("p1", "").get("/v2/images").await, 403).await;
}

async fn list_with_too_many_filters_tags_values_or_sort_keys_is_400(app: TestApp) {
    let reader = app.as_project("p1", "reader");
    let many = |item: &str, n: usize| (0..n).map(|i| item.replace("{i}", &i.to_string())).collect::<Vec<_>>().join("&");
    for query in [
        many("p{i}=v", 21),
        many("p=v", 950),
        many("tag=t{i}", 101),
        many("tag=t", 1000),
        format!("name=in:{}", vec!["a"; 1001].join(",")),
        many("sort_key=name", 9),
        format!("sort={}", vec!["name:asc"; 1000].join(",")),
    ] {
        let message = expect_error(reader.get(&format!("/v2/images?{query}")).await, 400).await;
        assert!(message.starts_with("Too many"), "{message}");
    }
}

async fn list_with_the_most_filters_tags_and_sort_keys_allowed_finds_the_image(app: TestApp) {
    let owner = app.as_project("p1", "member");
    let mut body = json!({"name": "a", "tags": (0..100).map(|i| format!("t{i}")).collect::<Vec<_>>()});
    for i in 0..19 {
        body[format!("p{i}")] = json!("v");
    }
    let first = owner.create_image(body.clone()).await;
    let second = owner.create_image(body).await;
    let filters = (0..19).map(|i| format!("p{i}=v")).collect::<Vec<_>>().join("&");
    let tags = (0..100).map(|i| format!("tag=t{i}")).collect::<Vec<_>>().join("&");
    let names = std::iter::once("a").chain(vec!["b"; 980]).collect::<Vec<_>>().join(",");
    let sort = "sort_key=name&sort_key=status&sort_key=container_format&sort_key=disk_format&sort_key=size\
                &sort_key=id&sort_key=created_at&sort_key=updated_at&sort_dir=asc";
    let query = format!("/v2/images?{filters}&{tags}&name=in:{names}&{sort}&limit=1");
    let started = std::time::Instant::now();
    let page = owner.get_json(&query).await;
    // PostgreSQL once planned such a query for over 30 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    let expected = |image: &serde_json::Value| vec![image["id"].as_str().unwrap().to_owned()];
    let (low, high) = if first["id"].as_str() < second["id"].as_str() { (&first, &second) } else { (&second, &first) };
    assert_eq!(ids(&page), expected(low));
    let next = page["next"].as_str().expect("a next link");
    assert_eq!(owner.list_ids(next.trim_start_matches("/v2/images")).await, expected(high));
}
