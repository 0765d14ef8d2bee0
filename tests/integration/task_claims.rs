//! The task row protocol workers rely on: exclusive claims, leases, the outbox marks.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use glint_core::task::repo as tasks;
use glint_core::task::{Task, TaskStatus, TaskType};
use serde_json::json;

use crate::support::{TestApp, on_every_database};

on_every_database!(idle;
    claim_is_exclusive_under_a_race,
    claim_of_a_running_or_finished_task_is_refused,
    lease_renewal_keeps_the_claim_and_expiry_releases_it,
    finish_needs_the_claim_and_sets_the_expiry,
    outbox_lists_unconfirmed_pending_tasks,
    hand_over_needs_the_claim_and_leaves_the_task_unannounced_for_anyone,
    a_publish_confirmed_after_the_claim_writes_nothing,
    finishing_drops_the_callers_credentials_whether_or_not_the_worker_has_the_input,
);

const ID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const HOUR: Duration = Duration::from_secs(3600);

/// `worker`'s claim of task [`ID`], ending with a time to live of `ttl`.
fn claim(worker: &str, ttl: Duration) -> tasks::Claim<'_> {
    tasks::Claim { task_id: ID, worker, ttl, input: None }
}

async fn pending(app: &TestApp, id: &str) {
    pending_with(app, id, json!({})).await;
}

async fn pending_with(app: &TestApp, id: &str, input: serde_json::Value) {
    let at = NaiveDateTime::parse_from_str("2024-01-01 00:00:00", "%Y-%m-%d %H:%M:%S").expect("time");
    let task = Task {
        id: id.to_owned(),
        task_type: TaskType::ApiImageImport,
        status: TaskStatus::Pending,
        owner: "p1".into(),
        expires_at: None,
        image_id: None,
        request_id: None,
        user_id: None,
        created_at: at,
        updated_at: at,
        input: Some(input),
        result: None,
        message: String::new(),
    };
    tasks::insert(&app.db, &task).await.expect("insert");
}

async fn claim_is_exclusive_under_a_race(app: TestApp) {
    pending(&app, ID).await;
    let workers = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(workers));
    let mut handles = Vec::new();
    for n in 0..workers {
        let (db, barrier) = (app.db.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            tasks::claim(&db, ID, &format!("worker-{n}"), HOUR).await.expect("claim")
        }));
    }
    let mut winners = 0;
    for handle in handles {
        if let Some(task) = handle.await.expect("join") {
            assert_eq!(task.status, TaskStatus::Processing);
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

async fn claim_of_a_running_or_finished_task_is_refused(app: TestApp) {
    pending(&app, ID).await;
    assert!(tasks::claim(&app.db, ID, "w1", HOUR).await.expect("claim").is_some());
    assert!(
        tasks::claim(&app.db, ID, "w2", HOUR).await.expect("claim").is_none(),
        "a redelivered wake-up runs nothing"
    );
    assert!(tasks::succeed(&app.db, &claim("w1", HOUR), json!({})).await.expect("finish"));
    assert!(tasks::claim(&app.db, ID, "w2", HOUR).await.expect("claim").is_none());
    assert!(tasks::claim(&app.db, "bbbbbbbb-0000-4000-8000-000000000002", "w2", HOUR).await.expect("claim").is_none());
}

async fn lease_renewal_keeps_the_claim_and_expiry_releases_it(app: TestApp) {
    pending(&app, ID).await;
    tasks::claim(&app.db, ID, "w1", HOUR).await.expect("claim").expect("claimed");
    assert!(tasks::renew_lease(&app.db, ID, "w1", HOUR).await.expect("renew"));
    assert!(!tasks::renew_lease(&app.db, ID, "w2", HOUR).await.expect("renew"), "only the holder renews");
    assert_eq!(tasks::release_expired_leases(&app.db).await.expect("sweep"), 0);

    // The worker died: its lease ran out without renewal.
    assert!(tasks::renew_lease(&app.db, ID, "w1", Duration::ZERO).await.expect("renew"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(tasks::release_expired_leases(&app.db).await.expect("sweep"), 1);
    assert!(!tasks::renew_lease(&app.db, ID, "w1", HOUR).await.expect("renew"), "the dead worker lost its claim");
    assert_eq!(tasks::unpublished(&app.db, HOUR, 10).await.expect("outbox"), vec![ID.to_owned()]);
    let task = tasks::claim(&app.db, ID, "w2", HOUR).await.expect("claim").expect("claimable again");
    assert_eq!(task.status, TaskStatus::Processing);
    assert!(!tasks::succeed(&app.db, &claim("w1", HOUR), json!({})).await.expect("finish"));
}

async fn finish_needs_the_claim_and_sets_the_expiry(app: TestApp) {
    pending(&app, ID).await;
    assert!(!tasks::fail(&app.db, &claim("w1", HOUR), "x").await.expect("finish"));
    tasks::claim(&app.db, ID, "w1", HOUR).await.expect("claim").expect("claimed");
    let result = json!({"image_id": "8b1a0000-0000-4000-8000-000000000001"});
    assert!(tasks::succeed(&app.db, &claim("w1", 48 * HOUR), result.clone()).await.expect("finish"));
    let task = app.get_json(&format!("/v2/tasks/{ID}")).await;
    assert_eq!(task["status"], "success");
    assert_eq!(task["result"], result);
    assert!(task["expires_at"].as_str().is_some());
    assert!(!tasks::fail(&app.db, &claim("w1", HOUR), "late").await.expect("fail"), "an ended task stays ended");
}

async fn outbox_lists_unconfirmed_pending_tasks(app: TestApp) {
    pending(&app, ID).await;
    assert_eq!(tasks::unpublished(&app.db, HOUR, 10).await.expect("outbox"), vec![ID.to_owned()]);
    tasks::mark_published(&app.db, ID).await.expect("mark");
    assert!(tasks::unpublished(&app.db, HOUR, 10).await.expect("outbox").is_empty());
    assert_eq!(
        tasks::unpublished(&app.db, Duration::ZERO, 10).await.expect("outbox"),
        vec![ID.to_owned()],
        "republished once stale"
    );
    tasks::claim(&app.db, ID, "w1", HOUR).await.expect("claim");
    assert!(tasks::unpublished(&app.db, Duration::ZERO, 10).await.expect("outbox").is_empty());
}

async fn hand_over_needs_the_claim_and_leaves_the_task_unannounced_for_anyone(app: TestApp) {
    pending(&app, ID).await;
    tasks::mark_published(&app.db, ID).await.expect("mark");
    tasks::claim(&app.db, ID, "w1", HOUR).await.expect("claim").expect("claimed");
    assert!(!tasks::hand_over(&app.db, ID, "w2").await.expect("hand over"), "only the holder hands over");
    assert!(tasks::hand_over(&app.db, ID, "w1").await.expect("hand over"));
    assert!(!tasks::renew_lease(&app.db, ID, "w1", HOUR).await.expect("renew"), "the claim is gone");
    assert_eq!(tasks::attempts(&app.db, ID).await.expect("attempts"), 0, "a hand-over is not an attempt");
    assert_eq!(tasks::unpublished(&app.db, HOUR, 10).await.expect("outbox"), vec![ID.to_owned()]);
    let task = tasks::claim(&app.db, ID, "w2", HOUR).await.expect("claim").expect("claimable at once");
    assert_eq!(task.status, TaskStatus::Processing);
    assert!(!tasks::hand_over(&app.db, ID, "w1").await.expect("hand over"), "w1 holds nothing now");
}

async fn a_publish_confirmed_after_the_claim_writes_nothing(app: TestApp) {
    use glint_core::db::entity::task;
    use sea_orm::EntityTrait;
    pending(&app, ID).await;
    tasks::claim(&app.db, ID, "w1", HOUR).await.expect("claim").expect("claimed");
    tasks::mark_published(&app.db, ID).await.expect("mark");
    let row = task::Entity::find_by_id(ID.to_owned()).one(&app.db).await.expect("read").expect("row");
    assert_eq!(row.published_at, None, "a claimed task's wake-up is moot");
    assert_eq!(row.status, TaskStatus::Processing.as_str());
}

async fn finishing_drops_the_callers_credentials_whether_or_not_the_worker_has_the_input(app: TestApp) {
    const OTHER: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    let input = json!({"image_id": "i1", "caller": {"auth_token": "secret"}, "backend": [null]});
    for id in [ID, OTHER] {
        pending_with(&app, id, input.clone()).await;
    }
    let held = tasks::claim(&app.db, ID, "w1", HOUR).await.expect("claim").expect("claimed");
    let with_input = tasks::Claim { task_id: ID, worker: "w1", ttl: HOUR, input: held.input.as_ref() };
    assert!(tasks::succeed(&app.db, &with_input, json!({"image_id": "i1"})).await.expect("finish"));
    tasks::claim(&app.db, OTHER, "w1", HOUR).await.expect("claim").expect("claimed");
    let without_input = tasks::Claim { task_id: OTHER, worker: "w1", ttl: HOUR, input: None };
    assert!(tasks::fail(&app.db, &without_input, "broken").await.expect("finish"));
    for id in [ID, OTHER] {
        let stored = tasks::get(&app.db, id).await.expect("get").expect("task");
        assert_eq!(stored.input, Some(json!({"image_id": "i1", "backend": [null]})), "{id}");
        assert!(stored.status.is_final());
    }
}
