//! The RabbitMQ transport of deployments (lapin on tokio).
//!
//! Wire format: one durable queue, declared by publishers and consumers alike on every
//! (re)connect; each wake-up is a persistent message on the default exchange whose body is
//! the task id as plain UTF-8 (`content_type` `text/plain`), nothing else, so an operator can
//! read or inject one with any AMQP tool.
//!
//! Outages are the normal case here, not an error path: construction never touches the
//! broker, a publish during an outage fails within [`CONNECT_TIMEOUT`] (or at once while the
//! publisher waits out its [`backoff`]) so the outbox relay retries it later, and a
//! subscription reconnects by itself and resumes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tokio::sync::{Mutex, watch};

use super::{Message, QueueError, Settle, Subscription, TaskQueue, backoff};

/// Longest wait for a connection, a channel and the queue declaration: a broker that is down
/// must cost a publish (and so an API request) no more than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for a publisher confirm. A broker that took the message but went silent
/// (a partition rather than a closed socket) is treated as gone.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that stayed up this long was healthy, so losing it starts the backoff over.
const HEALTHY_FOR: Duration = Duration::from_secs(30);

/// Longest wait of a consumer between reconnects. Trying a dead broker costs a refused TCP
/// connection, while a worker that waits the publishers' 30 s misses a broker that is back.
const CONSUMER_MAX_WAIT: Duration = Duration::from_secs(3);

/// A RabbitMQ-backed [`TaskQueue`]; clones share one publishing connection.
///
/// Every subscription has a connection of its own, and ends (`next` returns `None`) once the
/// last clone of the queue it came from is dropped.
#[derive(Clone)]
pub struct RabbitQueue {
    shared: Arc<Shared>,
}

struct Shared {
    target: Arc<Target>,
    publisher: Mutex<PublisherSlot>,
    /// Never sent on: subscriptions watch for it being dropped with the last queue handle.
    alive: watch::Sender<()>,
}

/// Where to connect and which queue to use.
struct Target {
    uri: AMQPUri,
    queue: String,
}

#[derive(Default)]
struct PublisherSlot {
    live: Option<Publisher>,
    /// Tells a failed publish whether the connection it used is still the current one.
    generation: u64,
    failures: u32,
    /// No reconnect before this instant: publishes fail at once until then.
    retry_at: Option<Instant>,
    last_error: String,
}

struct Publisher {
    connection: Connection,
    channel: Channel,
}

impl RabbitQueue {
    /// A queue named `queue_name` on the broker at `url` (`amqp://user:password@host:port/vhost`,
    /// vhost `%2f` for `/`). Does not connect: that happens on the first publish or subscribe,
    /// so a broker that is down at start-up delays nothing.
    ///
    /// Fails only when the configuration cannot work: an unparsable URL, `amqps://` (this build
    /// has no TLS backend), or an empty queue name (that would ask the broker for a
    /// throw-away queue).
    pub fn new(url: &str, queue_name: &str) -> Result<Self, String> {
        let uri = parse_url(url)?;
        if queue_name.is_empty() {
            return Err("the RabbitMQ queue name is empty".to_owned());
        }
        let (alive, _) = watch::channel(());
        Ok(RabbitQueue {
            shared: Arc::new(Shared {
                target: Arc::new(Target { uri, queue: queue_name.to_owned() }),
                publisher: Mutex::new(PublisherSlot::default()),
                alive,
            }),
        })
    }
}

fn parse_url(url: &str) -> Result<AMQPUri, String> {
    let mut uri: AMQPUri = url.parse().map_err(|e| format!("invalid RabbitMQ URL: {e}"))?;
    if uri.scheme == AMQPScheme::AMQPS {
        return Err("amqps:// RabbitMQ URLs are not supported: this build has no TLS backend".to_owned());
    }
    // amq-protocol-uri reads the host with `Url::domain`, which is `None` for an IP address,
    // and then silently falls back to "localhost".
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid RabbitMQ URL: {e}"))?;
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => uri.authority.host = ip.to_string(),
        Some(url::Host::Ipv6(ip)) => uri.authority.host = ip.to_string(),
        Some(url::Host::Domain(_)) | None => {}
    }
    Ok(uri)
}

#[async_trait::async_trait]
impl TaskQueue for RabbitQueue {
    async fn publish(&self, task_id: &str) -> Result<(), QueueError> {
        loop {
            let (channel, generation, fresh) = self.shared.publishing_channel().await?;
            let outcome = publish_on(&channel, &self.shared.target.queue, task_id).await;
            let Err(failure) = outcome else { return Ok(()) };
            if !failure.needs_new_connection() {
                return Err(failure.into_queue_error());
            }
            self.shared.discard_publisher(generation).await;
            // A connection that died while idle (a broker restart resets the socket) is only
            // noticed by the next publish: that one deserves a fresh connection rather than an
            // error. A duplicate from retrying a publish whose confirm was lost is harmless.
            if fresh {
                return Err(failure.into_queue_error());
            }
        }
    }

    async fn subscribe(&self, prefetch: u16) -> Result<Box<dyn Subscription>, QueueError> {
        let mut subscription = RabbitSubscription {
            target: self.shared.target.clone(),
            // Zero would mean "unlimited" to the broker; the in-process transport reads it as 1.
            prefetch: prefetch.max(1),
            alive: self.shared.alive.subscribe(),
            live: None,
            failures: 0,
        };
        // Consume from the start when the broker is there, so messages published after this
        // returns are already ours; if it is not, `next` keeps trying.
        subscription.connect().await;
        Ok(Box::new(subscription))
    }
}

impl Shared {
    /// The current publishing channel, its generation and whether it was opened by this call,
    /// opening a connection if there is none (or it died) and the backoff since the last failed
    /// attempt has passed.
    async fn publishing_channel(&self) -> Result<(Channel, u64, bool), QueueError> {
        let mut slot = self.publisher.lock().await;
        if let Some(publisher) = &slot.live {
            if publisher.connection.status().connected() && publisher.channel.status().connected() {
                return Ok((publisher.channel.clone(), slot.generation, false));
            }
            slot.live = None;
        }
        if let Some(retry_at) = slot.retry_at
            && Instant::now() < retry_at
        {
            return Err(QueueError::Unavailable(format!("waiting to reconnect after: {}", slot.last_error)));
        }
        match open_publisher(&self.target).await {
            Ok(publisher) => {
                let channel = publisher.channel.clone();
                slot.live = Some(publisher);
                slot.generation += 1;
                slot.failures = 0;
                slot.retry_at = None;
                Ok((channel, slot.generation, true))
            }
            Err(error) => {
                tracing::warn!(queue = %self.target.queue, %error, "cannot connect to RabbitMQ to publish");
                slot.retry_at = Some(Instant::now() + backoff(slot.failures));
                slot.failures = slot.failures.saturating_add(1);
                slot.last_error.clone_from(&error);
                Err(QueueError::Unavailable(error))
            }
        }
    }

    /// Drops the publishing connection of `generation` unless a newer one replaced it already.
    async fn discard_publisher(&self, generation: u64) {
        let mut slot = self.publisher.lock().await;
        if slot.generation == generation {
            slot.live = None;
        }
    }
}

async fn open_publisher(target: &Target) -> Result<Publisher, String> {
    within_connect_timeout(async {
        let (connection, channel) = open_channel(target, "publisher").await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Publisher { connection, channel })
    })
    .await
}

/// Opens a connection and a channel and declares the queue on it.
async fn open_channel(target: &Target, role: &str) -> lapin::Result<(Connection, Channel)> {
    let properties = ConnectionProperties::default().with_connection_name(format!("glint {role}").into());
    let connection = Connection::connect_uri(target.uri.clone(), properties).await?;
    let channel = connection.create_channel().await?;
    channel.queue_declare(target.queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default()).await?;
    Ok((connection, channel))
}

async fn within_connect_timeout<T>(attempt: impl Future<Output = lapin::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer from RabbitMQ within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// Why a publish failed, and so whether its connection can still be used.
enum PublishFailure {
    /// The connection or channel broke, or the broker went silent.
    Broken(String),
    /// Confirmed, but routed nowhere: the queue was deleted behind our back, so the next
    /// connection must declare it again.
    Unroutable(String),
    /// The broker refused the message; the channel is fine.
    Refused(String),
}

impl PublishFailure {
    fn needs_new_connection(&self) -> bool {
        matches!(self, PublishFailure::Broken(_) | PublishFailure::Unroutable(_))
    }

    fn into_queue_error(self) -> QueueError {
        match self {
            PublishFailure::Broken(reason) => QueueError::Unavailable(reason),
            PublishFailure::Unroutable(reason) | PublishFailure::Refused(reason) => QueueError::NotConfirmed(reason),
        }
    }
}

async fn publish_on(channel: &Channel, queue: &str, task_id: &str) -> Result<(), PublishFailure> {
    let properties = BasicProperties::default().with_delivery_mode(2).with_content_type("text/plain".into());
    // Mandatory, so a message that reaches no queue comes back instead of being confirmed
    // and dropped.
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let confirm = channel
        .basic_publish("".into(), queue.into(), options, task_id.as_bytes(), properties)
        .await
        .map_err(|e| PublishFailure::Broken(e.to_string()))?;
    let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
        .await
        .map_err(|_| PublishFailure::Broken(format!("no publisher confirm within {} s", CONFIRM_TIMEOUT.as_secs())))?
        .map_err(|e| PublishFailure::Broken(e.to_string()))?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => {
            Err(PublishFailure::Unroutable(format!("queue {queue} does not exist: {}", returned.reply_text)))
        }
        Confirmation::Nack(_) => Err(PublishFailure::Refused("the broker nacked the message".to_owned())),
        Confirmation::NotRequested => {
            Err(PublishFailure::Refused("publisher confirms are off on this channel".to_owned()))
        }
    }
}

struct RabbitSubscription {
    target: Arc<Target>,
    prefetch: u16,
    alive: watch::Receiver<()>,
    live: Option<Consuming>,
    /// Connections lost or refused in a row; sets the wait before the next attempt.
    failures: u32,
}

struct Consuming {
    // Held for its lifetime: dropping it closes the connection, and the broker then
    // requeues whatever this subscription had not settled.
    _connection: Connection,
    consumer: Consumer,
    since: Instant,
}

impl RabbitSubscription {
    /// One attempt to open a consuming connection; failures are counted for the backoff.
    async fn connect(&mut self) {
        let prefetch = self.prefetch;
        let attempt = within_connect_timeout(async {
            let (connection, channel) = open_channel(&self.target, "consumer").await?;
            channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
            // An empty tag lets the broker choose a unique one.
            let consumer = channel
                .basic_consume(
                    self.target.queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok(Consuming { _connection: connection, consumer, since: Instant::now() })
        })
        .await;
        match attempt {
            Ok(consuming) => self.live = Some(consuming),
            Err(error) => {
                tracing::warn!(queue = %self.target.queue, %error, "cannot connect to RabbitMQ to consume");
                self.failures = self.failures.saturating_add(1);
            }
        }
    }

    fn lose_connection(&mut self, why: &str) {
        if let Some(consuming) = self.live.take() {
            tracing::warn!(queue = %self.target.queue, why, "lost the RabbitMQ consumer; reconnecting");
            self.failures = if consuming.since.elapsed() >= HEALTHY_FOR { 1 } else { self.failures.saturating_add(1) };
        }
    }
}

/// Resolves once every handle to the queue is gone.
async fn queue_dropped(alive: &mut watch::Receiver<()>) {
    while alive.changed().await.is_ok() {}
}

#[async_trait::async_trait]
impl Subscription for RabbitSubscription {
    async fn next(&mut self) -> Option<Message> {
        loop {
            if self.alive.has_changed().is_err() {
                self.live = None;
                return None;
            }
            let Some(consuming) = self.live.as_mut() else {
                if self.failures > 0 {
                    tokio::select! {
                        () = queue_dropped(&mut self.alive) => continue,
                        () = tokio::time::sleep(backoff(self.failures - 1).min(CONSUMER_MAX_WAIT)) => {}
                    }
                }
                self.connect().await;
                continue;
            };
            let delivery = tokio::select! {
                () = queue_dropped(&mut self.alive) => continue,
                delivery = consuming.consumer.next() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => match String::from_utf8(delivery.data) {
                    Ok(task_id) => {
                        // A delivery proves the connection works: the next loss starts over.
                        self.failures = 0;
                        return Some(Message::new(task_id, Box::new(RabbitSettle { acker: delivery.acker })));
                    }
                    Err(_) => {
                        // Not one of ours: requeueing it would loop forever, and a real task
                        // still pending is republished by the outbox relay anyway.
                        tracing::warn!(queue = %self.target.queue, "dropping a message whose body is not UTF-8");
                        RabbitSettle { acker: delivery.acker }.settle_ack().await;
                    }
                },
                Some(Err(error)) => self.lose_connection(&error.to_string()),
                None => self.lose_connection("the broker cancelled the consumer"),
            }
        }
    }
}

/// Settles one delivery on the channel it came from. If that channel is gone, the broker
/// has requeued the message already, so there is nothing left to do.
struct RabbitSettle {
    acker: Acker,
}

impl RabbitSettle {
    async fn settle_ack(&self) {
        if let Err(error) = self.acker.ack(BasicAckOptions::default()).await {
            tracing::debug!(%error, "ack not delivered; the broker will redeliver the message");
        }
    }
}

#[async_trait::async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) {
        self.settle_ack().await;
    }

    async fn requeue(self: Box<Self>) {
        let options = BasicNackOptions { requeue: true, ..BasicNackOptions::default() };
        if let Err(error) = self.acker.nack(options).await {
            tracing::debug!(%error, "requeue not delivered; the broker will redeliver the message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hosts_are_kept() {
        let uri = parse_url("amqp://guest:guest@10.1.2.3:5673/%2f").expect("valid");
        assert_eq!((uri.authority.host.as_str(), uri.authority.port, uri.vhost.as_str()), ("10.1.2.3", 5673, "/"));
        let uri = parse_url("amqp://[::1]:5672/%2f").expect("valid");
        assert_eq!(uri.authority.host, "::1");
        let uri = parse_url("amqp://rabbit.internal/glint").expect("valid");
        assert_eq!((uri.authority.host.as_str(), uri.vhost.as_str()), ("rabbit.internal", "glint"));
    }

    #[test]
    fn unusable_configuration_is_refused() {
        assert!(RabbitQueue::new("amqps://rabbit.internal/%2f", "tasks").is_err());
        assert!(RabbitQueue::new("not a url", "tasks").is_err());
        assert!(RabbitQueue::new("amqp://127.0.0.1/%2f", "").is_err());
    }
}
