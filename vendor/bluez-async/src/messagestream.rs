use dbus::Message;
use dbus::nonblock::{MsgMatch, SyncConnection};
use futures::Stream;
use futures::channel::mpsc::UnboundedReceiver;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Wrapper for a stream of D-Bus messages which automatically removes the `MsgMatch` from the D-Bus
/// connection when it is dropped.
pub struct MessageStream {
    msg_match: Option<MsgMatch>,
    /// The match rule as sent to the bus, to remove it there when the filter is already gone.
    rule: String,
    events: UnboundedReceiver<Message>,
    connection: Arc<SyncConnection>,
}

impl MessageStream {
    pub fn new(msg_match: MsgMatch, rule: String, connection: Arc<SyncConnection>) -> Self {
        let (msg_match, events) = msg_match.msg_stream();
        Self {
            msg_match: Some(msg_match),
            rule,
            events,
            connection,
        }
    }
}

impl Stream for MessageStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        let Some(msg_match) = self.msg_match.take() else {
            return;
        };
        let connection = self.connection.clone();
        // vitalsd patch (see ../PATCHED.md). The upstream code unwrapped `remove_match`, which
        // panicked in two ordinary cases: a signal arriving between this drop and the spawned
        // task finds the receiver gone, and the connection then removes the filter itself (so
        // `remove_match` reports "No match with that id found"); and a connection whose bus has
        // gone cannot send RemoveMatch. In the first case the bus-side rule is still removed by
        // its match string; in the second there is nothing left to remove.
        let rule = std::mem::take(&mut self.rule);
        let token = msg_match.token();
        let remove = async move {
            if connection.remove_match(token).await.is_err() {
                let _ = connection.remove_match_no_cb(&rule).await;
            }
        };
        // Dropped outside a runtime (at the very end of a process): nothing to clean up then.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(remove);
        }
    }
}
