//! Polling a future of rare events only when one of them has woken the task (`Gated`).
//!
//! A downstream connection's task is woken a few times per request (its socket, the upstream's),
//! and a `select!` polls every branch on every wake. The connection's rare events (stop, drain,
//! GOAWAY, the idle, age and park timers) cost ~2,100 instructions per request that way
//! (callgrind, `benches/RESULTS.md`) and are almost never ready. Behind a `Gated` they are polled
//! with a waker of their own, and only after it fired: a wake that is not theirs costs one atomic
//! swap and one waker comparison.
//! May not touch: what the events mean (`connection`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// The waker the gated future is polled with: notes the wake, then wakes the task.
struct Gate {
    woken: AtomicBool,
    /// The task's waker, as last seen by `Gated::poll`.
    task: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().ok().and_then(|t| t.clone());
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// Polls a future only when its own waker has fired since the last poll (and on the first).
pub(super) struct Gated {
    gate: Arc<Gate>,
    /// `gate` as a `Waker`, made once.
    waker: Waker,
    /// The task's waker `gate` holds (compared without the lock).
    task: Option<Waker>,
}

impl Gated {
    pub fn new() -> Gated {
        let gate = Arc::new(Gate {
            // The first poll goes through: it registers the future's wakers.
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let waker = Waker::from(gate.clone());
        Gated {
            gate,
            waker,
            task: None,
        }
    }

    /// Polls `rare` if its waker fired since it was last polled; else `Pending` (the task is
    /// woken when it fires).
    pub fn poll<F: Future>(&mut self, rare: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            // The first poll, or the task has a new waker: the gate wakes that one from now on.
            let task = cx.waker().clone();
            if let Ok(mut held) = self.gate.task.lock() {
                *held = Some(task.clone());
            }
            self.task = Some(task);
        }
        if !self.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        rare.poll(&mut Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Counts the task's wakes.
    struct Task(AtomicUsize);
    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_future_is_polled_first_then_only_after_its_own_wake() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let its_waker = Arc::new(Mutex::new(None::<Waker>));
        let mut probe = Box::pin(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: its_waker.clone(),
        });
        let task = Arc::new(Task(AtomicUsize::new(0)));
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);
        let mut gated = Gated::new();

        assert!(gated.poll(probe.as_mut(), &mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "the first poll goes through"
        );
        // Wakes of the task that are not the probe's: the probe is left alone.
        for _ in 0..5 {
            assert!(gated.poll(probe.as_mut(), &mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);

        // The probe's own waker fires: the task is woken, and the next poll reaches the probe.
        ready.store(true, Ordering::SeqCst);
        let w = its_waker.lock().unwrap().take().unwrap();
        w.wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(gated.poll(probe.as_mut(), &mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_new_task_waker_is_the_one_woken() {
        let ready = Arc::new(AtomicBool::new(false));
        let its_waker = Arc::new(Mutex::new(None::<Waker>));
        let mut probe = Box::pin(Probe {
            polls: Arc::new(AtomicUsize::new(0)),
            ready,
            waker: its_waker.clone(),
        });
        let first = Arc::new(Task(AtomicUsize::new(0)));
        let second = Arc::new(Task(AtomicUsize::new(0)));
        let mut gated = Gated::new();
        let w1 = Waker::from(first.clone());
        assert!(gated
            .poll(probe.as_mut(), &mut Context::from_waker(&w1))
            .is_pending());
        let w2 = Waker::from(second.clone());
        assert!(gated
            .poll(probe.as_mut(), &mut Context::from_waker(&w2))
            .is_pending());
        its_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
