//! Task transport: wake-up messages carrying a task id, from the outbox to the workers.
//!
//! The tasks table is the truth and a message is only a wake-up call: a lost message is
//! republished by the outbox relay, a duplicated one is harmless because workers claim the
//! task row with a conditional update. So transports promise at-least-once delivery of
//! confirmed publishes, and nothing more.

mod memory;
mod rabbitmq;

use std::time::Duration;

pub use memory::MemoryQueue;
pub use rabbitmq::RabbitQueue;

/// Why a transport operation failed. All of these are transient for the caller: the
/// outbox relay retries publishes, consumers reconnect.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker cannot be reached or dropped the connection.
    #[error("message broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused or did not confirm a publish.
    #[error("message broker did not confirm the publish: {0}")]
    NotConfirmed(String),
    /// The transport was shut down.
    #[error("the task queue is closed")]
    Closed,
}

/// A transport for task wake-ups (RabbitMQ for deployments, in-process for `glint serve`).
#[async_trait::async_trait]
pub trait TaskQueue: Send + Sync {
    /// Publishes a wake-up for `task_id`; returns once the transport has durably accepted it.
    async fn publish(&self, task_id: &str) -> Result<(), QueueError>;
    /// Starts receiving wake-ups, at most `prefetch` unacknowledged at a time.
    async fn subscribe(&self, prefetch: u16) -> Result<Box<dyn Subscription>, QueueError>;
}

/// A consumer's stream of wake-ups.
#[async_trait::async_trait]
pub trait Subscription: Send {
    /// The next wake-up; `None` once the transport is closed for good. Broker outages are
    /// handled inside (reconnect with backoff), so a consumer just waits here meanwhile.
    async fn next(&mut self) -> Option<Message>;
}

/// Settles one delivery with the transport.
#[async_trait::async_trait]
pub trait Settle: Send {
    /// The task is dealt with (done, failed for good, or not ours to run): forget the message.
    async fn ack(self: Box<Self>);
    /// Deliver the message again later (a transient failure before the task was finished).
    async fn requeue(self: Box<Self>);
}

/// One delivered wake-up; settle it with [`Message::ack`] or [`Message::requeue`].
pub struct Message {
    /// The task to look at.
    pub task_id: String,
    settle: Box<dyn Settle>,
}

impl Message {
    /// A message for `task_id`, settled through `settle`.
    pub fn new(task_id: String, settle: Box<dyn Settle>) -> Self {
        Message { task_id, settle }
    }

    /// See [`Settle::ack`].
    pub async fn ack(self) {
        self.settle.ack().await;
    }

    /// See [`Settle::requeue`].
    pub async fn requeue(self) {
        self.settle.requeue().await;
    }
}

/// Publishes a wake-up for recorded task `task_id` and notes the confirmation, so the
/// outbox relay does not publish it again. A failure is only logged: the relay retries.
pub async fn announce(db: &sea_orm::DatabaseConnection, queue: &dyn TaskQueue, task_id: &str) {
    match queue.publish(task_id).await {
        Ok(()) => {
            if let Err(err) = crate::task::repo::mark_published(db, task_id).await {
                tracing::warn!(task = %task_id, error = %err, "cannot record the publish; the relay will publish again");
            }
        }
        Err(err) => {
            tracing::warn!(task = %task_id, error = %err, "cannot publish the task; the outbox relay will retry")
        }
    }
}

/// Delay before the `attempt`-th reconnect: doubling from 100 ms, capped at 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1u64 << attempt.min(9))).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(50), Duration::from_secs(30));
    }
}
