//! A session's outbound queue: what waits to be written to its socket, and the sending side
//! every producer (the session's replies, its subscriptions' updates) shares.

use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// What waits in a session's outbound queue: 32 bytes a slot (a tungstenite `Message` is twice
/// that), which matters because the queue's first block is allocated for every idle session.
pub(crate) enum Outbound {
    /// One encoded server message, sent as a binary frame.
    Frame(Bytes),
    /// A WebSocket ping (liveness).
    Ping,
}

impl Outbound {
    pub(super) fn into_message(self) -> Message {
        match self {
            Outbound::Frame(bytes) => Message::Binary(bytes),
            Outbound::Ping => Message::Ping(Bytes::new()),
        }
    }
}

/// The sending side of a session's outbound queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    /// Bounded (`NetConfig::outbound_queue`); only ever used with `try_send`.
    tx: mpsc::Sender<Outbound>,
    /// Cancelled when the queue is found full: the session then closes with 4008.
    overflow: CancellationToken,
    /// Notified by the session each time it has written queued messages to the socket, so a
    /// catch-up waiting for room ([`Outbox::room`]) looks again.
    drained: Arc<Notify>,
}

impl Outbox {
    pub(super) fn new(tx: mpsc::Sender<Outbound>, overflow: CancellationToken) -> Self {
        Self {
            tx,
            overflow,
            drained: Arc::new(Notify::new()),
        }
    }

    /// Called by the session's writer after each written batch.
    pub(super) fn drained(&self) {
        self.drained.notify_waiters();
    }

    /// Waits until the queue is at most half full; false if the session is gone meanwhile.
    /// Catch-up traffic (updates read from the log) waits here, so it never fills the half of
    /// the queue that replies and live updates need.
    pub(super) async fn room(&self) -> bool {
        let free_needed = self.tx.max_capacity() / 2;
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Registered before looking, so a drain between the look and the wait is not missed.
            notified.as_mut().enable();
            if self.tx.is_closed() || self.overflow.is_cancelled() {
                return false;
            }
            if self.tx.capacity() > free_needed {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.overflow.cancelled() => return false,
                _ = self.tx.closed() => return false,
            }
        }
    }

    /// Queues an encoded message without waiting; false if the session is gone or could not
    /// keep up.
    pub(super) fn send(&self, frame: Bytes) -> bool {
        self.put(Outbound::Frame(frame))
    }

    /// Queues a ping, like [`Outbox::send`].
    pub(super) fn ping(&self) -> bool {
        self.put(Outbound::Ping)
    }

    fn put(&self, msg: Outbound) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
