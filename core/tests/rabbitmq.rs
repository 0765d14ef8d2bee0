//! `RabbitQueue` against the real broker on 127.0.0.1:5672 (guest/guest).
//!
//! Each test works on a queue of its own and deletes it at the end. The outage tests stop
//! and start the broker application with `rabbitmqctl`, so they take the broker lock
//! exclusively while the other tests share it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use glint_core::queue::{Message, QueueError, RabbitQueue, Subscription, TaskQueue};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const ADDRESS: &str = "127.0.0.1:5672";
/// Long enough for a delivery from a healthy local broker.
const DELIVERY: Duration = Duration::from_secs(5);
/// Long enough to be sure nothing more is coming.
const QUIET: Duration = Duration::from_millis(500);

/// Held shared by ordinary tests and exclusively by the tests that stop the broker.
static BROKER: RwLock<()> = RwLock::const_new(());

/// A fresh queue name, deleted from the broker when dropped (even when the test panics).
struct TestQueue {
    name: String,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

impl TestQueue {
    async fn shared() -> Option<Self> {
        if !broker_reachable().await {
            return None;
        }
        Some(TestQueue { name: queue_name(), _shared: Some(BROKER.read().await), _exclusive: None })
    }

    async fn exclusive() -> Option<Self> {
        if !broker_reachable().await {
            return None;
        }
        Some(TestQueue { name: queue_name(), _shared: None, _exclusive: Some(BROKER.write().await) })
    }

    fn open(&self) -> RabbitQueue {
        RabbitQueue::new(URL, &self.name).expect("valid configuration")
    }

    async fn delete(&self) -> lapin::Result<()> {
        delete_queue(&self.name).await
    }

    /// Messages ready for delivery (neither delivered nor unacknowledged), as the broker counts.
    async fn ready(&self) -> u32 {
        let connection = Connection::connect(URL, ConnectionProperties::default()).await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let queue =
            channel.queue_declare(self.name.as_str().into(), options, FieldTable::default()).await.expect("declare");
        queue.message_count()
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime may be the one unwinding: use a runtime of
        // our own on a thread of our own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(delete_queue(&name))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete test queue {}", self.name);
        }
    }
}

async fn delete_queue(name: &str) -> lapin::Result<()> {
    let connection = Connection::connect(URL, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.queue_delete(name.into(), QueueDeleteOptions::default()).await?;
    connection.close(200, "done".into()).await
}

fn queue_name() -> String {
    format!("glint-test-{}", uuid::Uuid::new_v4())
}

async fn broker_reachable() -> bool {
    let connected = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(ADDRESS)).await;
    if matches!(connected, Ok(Ok(_))) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("RabbitMQ is unreachable on {ADDRESS}; CI must start it before the tests");
    }
    eprintln!("skipped: RabbitMQ unreachable");
    false
}

/// The broker application stopped (node still up); started again on drop, whatever happened.
struct BrokerOutage;

impl BrokerOutage {
    fn begin() -> Self {
        rabbitmqctl(&["stop_app"]);
        BrokerOutage
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        rabbitmqctl(&["start_app"]);
        // start_app returns before the listener always takes connections: wait for a handshake.
        let ready = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if let Ok(connection) = Connection::connect(URL, ConnectionProperties::default()).await {
                        let _ = connection.close(200, "ready".into()).await;
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                false
            })
        })
        .join();
        if !matches!(ready, Ok(true)) {
            eprintln!("RabbitMQ did not come back after start_app");
        }
    }
}

fn rabbitmqctl(arguments: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl").args(arguments).stdout(std::process::Stdio::null()).status();
    match status {
        Ok(status) if status.success() => {}
        other => eprintln!("rabbitmqctl {arguments:?} failed: {other:?}"),
    }
}

async fn next(subscription: &mut Box<dyn Subscription>) -> Message {
    tokio::time::timeout(DELIVERY, subscription.next())
        .await
        .expect("a delivery in time")
        .expect("the subscription is open")
}

async fn nothing_more(subscription: &mut Box<dyn Subscription>) {
    let extra = tokio::time::timeout(QUIET, subscription.next()).await;
    assert!(extra.is_err(), "unexpected delivery: {:?}", extra.ok().flatten().map(|m| m.task_id));
}

/// Publishes until the broker confirms, for when it is coming back.
async fn publish_eventually(queue: &RabbitQueue, task_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match queue.publish(task_id).await {
            Ok(()) => return,
            Err(error) if Instant::now() < deadline => {
                eprintln!("publish not yet confirmed: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("the broker is back but publishing still fails: {error}"),
        }
    }
}

#[tokio::test]
async fn publish_then_consume_delivers_each_id() {
    let Some(test) = TestQueue::shared().await else { return };
    let queue = test.open();
    let mut subscription = queue.subscribe(8).await.expect("subscribe");
    let ids: BTreeSet<String> = (0..20).map(|i| format!("task-{i}")).collect();
    for id in &ids {
        queue.publish(id).await.expect("publish");
    }
    let mut received = BTreeSet::new();
    for _ in 0..ids.len() {
        let message = next(&mut subscription).await;
        assert!(received.insert(message.task_id.clone()), "{} delivered twice", message.task_id);
        message.ack().await;
    }
    assert_eq!(received, ids);
    nothing_more(&mut subscription).await;
    assert_eq!(test.ready().await, 0);
}

#[tokio::test]
async fn requeued_message_is_delivered_again() {
    let Some(test) = TestQueue::shared().await else { return };
    let queue = test.open();
    let mut subscription = queue.subscribe(1).await.expect("subscribe");
    queue.publish("retry-me").await.expect("publish");
    let first = next(&mut subscription).await;
    assert_eq!(first.task_id, "retry-me");
    first.requeue().await;
    let again = next(&mut subscription).await;
    assert_eq!(again.task_id, "retry-me");
    again.ack().await;
    nothing_more(&mut subscription).await;
}

#[tokio::test]
async fn unacked_messages_are_redelivered_to_another_consumer_after_the_first_disconnects() {
    let Some(test) = TestQueue::shared().await else { return };
    let publisher = test.open();
    let ids: BTreeSet<String> = ["a", "b", "c"].into_iter().map(String::from).collect();
    let first = test.open();
    let mut first_subscription = first.subscribe(10).await.expect("subscribe");
    for id in &ids {
        publisher.publish(id).await.expect("publish");
    }
    let mut unsettled = Vec::new();
    for _ in 0..ids.len() {
        unsettled.push(next(&mut first_subscription).await);
    }
    // A worker that vanishes mid-task: its connection goes, its messages are never settled.
    drop(first_subscription);
    drop(first);

    let second = test.open();
    let mut second_subscription = second.subscribe(10).await.expect("subscribe");
    let mut redelivered = BTreeSet::new();
    for _ in 0..ids.len() {
        let message = next(&mut second_subscription).await;
        redelivered.insert(message.task_id.clone());
        message.ack().await;
    }
    assert_eq!(redelivered, ids);
    // Settling on the dead connection afterwards is harmless.
    for message in unsettled {
        message.ack().await;
    }
    nothing_more(&mut second_subscription).await;
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries() {
    let Some(test) = TestQueue::shared().await else { return };
    let queue = test.open();
    for i in 0..5 {
        queue.publish(&format!("task-{i}")).await.expect("publish");
    }
    let mut subscription = queue.subscribe(2).await.expect("subscribe");
    let first = next(&mut subscription).await;
    let second = next(&mut subscription).await;
    nothing_more(&mut subscription).await;
    assert_eq!(test.ready().await, 3, "the broker holds back what is beyond the prefetch window");

    first.ack().await;
    let third = next(&mut subscription).await;
    nothing_more(&mut subscription).await;
    assert_eq!(test.ready().await, 2);

    for message in [second, third] {
        message.ack().await;
    }
    for _ in 0..2 {
        next(&mut subscription).await.ack().await;
    }
    assert_eq!(test.ready().await, 0);
}

#[tokio::test]
async fn messages_survive_in_a_durable_queue_across_consumer_restarts() {
    let Some(test) = TestQueue::shared().await else { return };
    let ids: BTreeSet<String> = (0..5).map(|i| format!("task-{i}")).collect();
    {
        // Published while no consumer exists, by a handle that is gone before anyone consumes.
        let publisher = test.open();
        for id in &ids {
            publisher.publish(id).await.expect("publish");
        }
    }
    assert_eq!(test.ready().await, 5);

    let mut received = BTreeSet::new();
    {
        let queue = test.open();
        let mut subscription = queue.subscribe(1).await.expect("subscribe");
        for _ in 0..2 {
            let message = next(&mut subscription).await;
            received.insert(message.task_id.clone());
            message.ack().await;
        }
    }
    let queue = test.open();
    let mut subscription = queue.subscribe(1).await.expect("subscribe");
    for _ in 0..3 {
        let message = next(&mut subscription).await;
        assert!(received.insert(message.task_id.clone()), "{} delivered after its ack", message.task_id);
        message.ack().await;
    }
    assert_eq!(received, ids);
    nothing_more(&mut subscription).await;
}

#[tokio::test]
async fn publish_declares_the_queue_again_when_it_was_deleted_behind_its_back() {
    let Some(test) = TestQueue::shared().await else { return };
    let queue = test.open();
    queue.publish("first").await.expect("publish");
    test.delete().await.expect("delete the queue");
    // Unroutable now: the broker returns the message, and the publisher redeclares the queue.
    queue.publish("second").await.expect("publish after the queue was deleted");
    let mut subscription = queue.subscribe(1).await.expect("subscribe");
    let message = next(&mut subscription).await;
    assert_eq!(message.task_id, "second");
    message.ack().await;
}

#[tokio::test]
async fn subscription_ends_once_the_queue_is_dropped() {
    let Some(test) = TestQueue::shared().await else { return };
    let queue = test.open();
    let mut subscription = queue.subscribe(1).await.expect("subscribe");
    let waiting = tokio::spawn(async move { subscription.next().await.map(|message| message.task_id) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(queue);
    let ended = tokio::time::timeout(DELIVERY, waiting).await.expect("next returns").expect("join");
    assert_eq!(ended, None);
}

#[tokio::test]
async fn publish_fails_fast_while_the_broker_is_down_and_works_after_it_returns() {
    let Some(test) = TestQueue::exclusive().await else { return };
    let queue = test.open();
    queue.publish("before").await.expect("publish while the broker is up");

    let outage = BrokerOutage::begin();
    for attempt in 0..5 {
        let started = Instant::now();
        let outcome = queue.publish(&format!("during-{attempt}")).await;
        assert!(matches!(outcome, Err(QueueError::Unavailable(_))), "attempt {attempt}: {outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "attempt {attempt} took {:?}", started.elapsed());
    }
    // A process starting during the outage (the API) starts, and fails its publishes quickly.
    let started = Instant::now();
    let fresh = test.open();
    assert!(matches!(fresh.publish("fresh").await, Err(QueueError::Unavailable(_))));
    let mut subscription = fresh.subscribe(4).await.expect("subscribe is lazy while the broker is down");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    drop(outage);

    publish_eventually(&queue, "after").await;
    let mut received = BTreeSet::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .expect("the subscription made during the outage connects")
            .expect("open");
        received.insert(message.task_id.clone());
        message.ack().await;
    }
    // The persistent message published before the outage survived it; nothing published
    // during the outage was confirmed, so none of it is expected.
    assert_eq!(received, BTreeSet::from(["before".to_owned(), "after".to_owned()]));
    nothing_more(&mut subscription).await;
}

#[tokio::test]
async fn consumer_resumes_after_a_broker_restart() {
    let Some(test) = TestQueue::exclusive().await else { return };
    let queue = test.open();
    let mut subscription = queue.subscribe(4).await.expect("subscribe");
    queue.publish("first").await.expect("publish");
    let first = next(&mut subscription).await;
    assert_eq!(first.task_id, "first");
    first.ack().await;

    drop(BrokerOutage::begin());
    publish_eventually(&queue, "second").await;
    let second = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("the subscription reconnects by itself")
        .expect("open");
    assert_eq!(second.task_id, "second");
    second.ack().await;
    nothing_more(&mut subscription).await;
}
