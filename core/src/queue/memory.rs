//! The in-process transport of `glint serve`: API and workers share one process, so a
//! channel is the broker. Prefetch and requeue behave as with RabbitMQ.

use std::sync::Arc;

use tokio::sync::{Mutex, Semaphore, mpsc};

use super::{Message, QueueError, Settle, Subscription, TaskQueue};

/// An in-process queue; clones share it.
#[derive(Clone)]
pub struct MemoryQueue {
    sender: mpsc::UnboundedSender<String>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<String>>>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        MemoryQueue { sender, receiver: Arc::new(Mutex::new(receiver)) }
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl TaskQueue for MemoryQueue {
    async fn publish(&self, task_id: &str) -> Result<(), QueueError> {
        self.sender.send(task_id.to_owned()).map_err(|_| QueueError::Closed)
    }

    async fn subscribe(&self, prefetch: u16) -> Result<Box<dyn Subscription>, QueueError> {
        Ok(Box::new(MemorySubscription {
            queue: self.clone(),
            in_flight: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
        }))
    }
}

struct MemorySubscription {
    queue: MemoryQueue,
    in_flight: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<Message> {
        // Like a broker's prefetch window: no new delivery until an earlier one is settled.
        let permit = self.in_flight.clone().acquire_owned().await.ok()?;
        let task_id = self.queue.receiver.lock().await.recv().await?;
        let settle = MemorySettle { task_id: task_id.clone(), sender: self.queue.sender.clone(), _permit: permit };
        Some(Message::new(task_id, Box::new(settle)))
    }
}

struct MemorySettle {
    task_id: String,
    sender: mpsc::UnboundedSender<String>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[async_trait::async_trait]
impl Settle for MemorySettle {
    async fn ack(self: Box<Self>) {}

    async fn requeue(self: Box<Self>) {
        let _ = self.sender.send(self.task_id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn published_ids_are_delivered_and_requeued() {
        let queue = MemoryQueue::new();
        let mut subscription = queue.subscribe(2).await.expect("subscribe");
        queue.publish("a").await.expect("publish");
        queue.publish("b").await.expect("publish");
        let a = subscription.next().await.expect("a");
        assert_eq!(a.task_id, "a");
        a.requeue().await;
        let b = subscription.next().await.expect("b");
        let again = subscription.next().await.expect("a again");
        assert_eq!((b.task_id.as_str(), again.task_id.as_str()), ("b", "a"));
    }

    #[tokio::test]
    async fn prefetch_bounds_unsettled_deliveries() {
        let queue = MemoryQueue::new();
        let mut subscription = queue.subscribe(1).await.expect("subscribe");
        queue.publish("a").await.expect("publish");
        queue.publish("b").await.expect("publish");
        let a = subscription.next().await.expect("a");
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(50), subscription.next()).await;
        assert!(blocked.is_err(), "a second delivery must wait for the first to be settled");
        a.ack().await;
        assert_eq!(subscription.next().await.expect("b").task_id, "b");
    }
}
