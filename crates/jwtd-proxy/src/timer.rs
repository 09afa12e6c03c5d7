//! The header read timer of one client connection ([`crate::Limits::header_read_timeout`]).
//!
//! hyper's HTTP/1 server asks its timer for a new sleep each time it starts reading a request
//! head, and drops it once the head is in: with tokio's timer through hyper-util that is a
//! timer entry made, inserted in the timer wheel and removed again for every request, and, as
//! each new deadline is earlier than the runtime's next wake-up, a wake-up of the I/O driver
//! (an `eventfd` write and one more `epoll_wait`) per request. This timer keeps one tokio
//! sleep per connection instead: a request's sleep only compares its deadline with the clock,
//! and the connection's sleep is moved to a later deadline only when it fires (at most once
//! per `header_read_timeout`), so a head that is late is still cut at its own deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The connection's one tokio sleep, armed at the first head read.
type Slot = Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>;

/// A [`hyper::rt::Timer`] for one connection (give each connection its own).
#[derive(Clone, Default)]
pub(crate) struct HeadTimer {
    slot: Slot,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep {
            slot: self.slot.clone(),
            deadline,
        })
    }
}

/// One head's deadline.
struct HeadSleep {
    slot: Slot,
    deadline: Instant,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Armed for an earlier head, the sleep wakes this one early (then moved here); one
        // armed later (it never is: deadlines only grow) would be late, so it is moved.
        if sleep.is_elapsed() || sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            // Fired for an earlier deadline: moved to this one, and waited for.
            sleep.as_mut().reset(deadline);
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for HeadSleep {}
