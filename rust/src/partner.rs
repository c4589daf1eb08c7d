//! A second thread kept at hand for a loop of many short parallel steps.
//!
//! The unblocked tridiagonalization splits each of its ~n steps in two
//! halves of a few to a few tens of microseconds. `rayon::join` per step cost
//! ~5 µs a step on a 2-core AMD EPYC (the hand-over of the job and the wait
//! for its latch): a 512² reduction took 9.0 ms on one thread and 8.2 ms on
//! two. Here the partner is taken from the pool once, for the whole loop,
//! and spins between steps; a step is handed over through one atomic.
//!
//! Nothing waits for a partner that has not come: the caller posts the
//! other half, does its own, then claims the other half back if no partner
//! took it. So the loop is correct (and as fast as one thread) when the pool
//! has no idle thread to lend, and a panic in either half reaches the caller
//! after both halves are over.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

/// No half is posted.
const EMPTY: u8 = 0;
/// A half is posted and free to take.
const POSTED: u8 = 1;
/// The partner is running the posted half.
const TAKEN: u8 = 2;
/// The partner has finished the posted half.
const DONE: u8 = 3;
/// The loop is over: the partner leaves.
const STOP: u8 = 4;

/// Spins before a waiting thread starts yielding its core (~10-30 µs):
/// longer than the gap between two steps, short enough not to hold a core
/// while the caller does long sequential work.
const SPINS_BEFORE_YIELDING: u32 = 1 << 12;

/// A posted half: a type-erased `Option<F>` and the function that takes and
/// runs it.
#[derive(Clone, Copy)]
struct Task {
    data: *mut (),
    run: unsafe fn(*mut ()),
}

/// What the caller and the partner share.
struct Shared {
    state: AtomicU8,
    /// Written by the caller before `POSTED` (release), read by the partner
    /// after taking it (acquire); never touched while the other may.
    task: Mutex<Option<Task>>,
    /// A panic of the partner's half, for the caller to resume.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `Task` points at a closure that `Partner::join` keeps alive (and
// requires to be `Send`) until the partner reports it `DONE`.
unsafe impl Send for Task {}

/// The calling thread's handle on its partner, valid inside [`with_partner`].
pub struct Partner<'a> {
    shared: &'a Shared,
}

impl std::fmt::Debug for Partner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partner")
            .field("state", &self.shared.state.load(Ordering::Relaxed))
            .finish()
    }
}

/// Runs `body` with a partner thread from the current rayon pool (or the
/// global one) available to its [`Partner::join`] calls; the partner is
/// released when `body` returns or panics.
pub fn with_partner<R: Send>(body: impl FnOnce(&Partner<'_>) -> R + Send) -> R {
    let shared = Shared {
        state: AtomicU8::new(EMPTY),
        task: Mutex::new(None),
        panic: Mutex::new(None),
    };
    let (result, ()) = rayon::join(
        || {
            // Stops the partner however `body` ends, panics included.
            struct Release<'a>(&'a Shared);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.state.store(STOP, Ordering::Release);
                }
            }
            let _release = Release(&shared);
            body(&Partner { shared: &shared })
        },
        || serve(&shared),
    );
    result
}

/// The partner's loop: takes posted halves until told to stop.
fn serve(shared: &Shared) {
    let mut spins = 0u32;
    loop {
        match shared.state.load(Ordering::Acquire) {
            STOP => return,
            POSTED => {
                if shared
                    .state
                    .compare_exchange(POSTED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    let task = lock(&shared.task).take().expect("a posted half has a task");
                    // SAFETY: the half was posted and taken by this thread
                    // alone (the exchange above); its closure lives until DONE.
                    if let Err(payload) =
                        catch_unwind(AssertUnwindSafe(|| unsafe { (task.run)(task.data) }))
                    {
                        *lock(&shared.panic) = Some(payload);
                    }
                    shared.state.store(DONE, Ordering::Release);
                    spins = 0;
                }
            }
            _ => wait(&mut spins),
        }
    }
}

impl Partner<'_> {
    /// Runs `mine` on this thread and `theirs` on the partner if it takes it
    /// in time, else here after `mine`; returns when both are over.
    pub fn join<F: FnOnce() + Send>(&self, mine: impl FnOnce(), theirs: F) {
        let mut theirs = Some(theirs);
        let task = Task {
            data: (&raw mut theirs).cast(),
            run: run_once::<F>,
        };
        *lock(&self.shared.task) = Some(task);
        self.shared.state.store(POSTED, Ordering::Release);
        let mine = catch_unwind(AssertUnwindSafe(mine));
        let state = &self.shared.state;
        if state
            .compare_exchange(POSTED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Nobody took it: do it here.
            lock(&self.shared.task).take();
            if let Some(theirs) = theirs.take() {
                theirs();
            }
        } else {
            let mut spins = 0u32;
            while state.load(Ordering::Acquire) != DONE {
                wait(&mut spins);
            }
            state.store(EMPTY, Ordering::Relaxed);
            if let Some(payload) = lock(&self.shared.panic).take() {
                resume_unwind(payload);
            }
        }
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
    }
}

/// Takes the `Option<F>` at `data` and runs it.
///
/// # Safety
/// `data` points at a live `Option<F>` that no other thread touches.
unsafe fn run_once<F: FnOnce()>(data: *mut ()) {
    // SAFETY: as the caller promises.
    let slot = unsafe { &mut *data.cast::<Option<F>>() };
    if let Some(f) = slot.take() {
        f();
    }
}

/// Spins a while, then yields the core at each call.
fn wait(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELDING {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a pool")
    }

    #[test]
    fn every_half_runs_once_with_or_without_a_partner() {
        for threads in [1, 2, 3] {
            let (mine, theirs) = (AtomicUsize::new(0), AtomicUsize::new(0));
            pool(threads).install(|| {
                with_partner(|partner| {
                    for step in 0..2000 {
                        let mut left = step;
                        let mut right = step;
                        partner.join(|| left += 1, || right += 2);
                        assert_eq!((left, right), (step + 1, step + 2));
                        mine.fetch_add(1, Ordering::Relaxed);
                        theirs.fetch_add(1, Ordering::Relaxed);
                    }
                })
            });
            assert_eq!(mine.into_inner(), 2000);
            assert_eq!(theirs.into_inner(), 2000);
        }
    }

    #[test]
    fn the_other_half_runs_on_another_thread_when_one_is_free() {
        // `mine` waits (up to a second, tests run side by side on few cores)
        // until another thread has run the other half.
        let elsewhere = AtomicUsize::new(0);
        pool(2).install(|| {
            with_partner(|partner| {
                let me = std::thread::current().id();
                for step in 0..20 {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
                    partner.join(
                        || {
                            while elsewhere.load(Ordering::Acquire) == step
                                && std::time::Instant::now() < deadline
                            {
                                std::thread::yield_now();
                            }
                        },
                        || {
                            if std::thread::current().id() != me {
                                elsewhere.fetch_add(1, Ordering::Release);
                            }
                        },
                    );
                }
            })
        });
        assert_eq!(elsewhere.into_inner(), 20, "the partner took every half");
    }

    #[test]
    fn a_panic_in_either_half_reaches_the_caller_and_frees_the_partner() {
        let pool = pool(2);
        for panicking_half in [0, 1] {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                pool.install(|| {
                    with_partner(|partner| {
                        for step in 0..100 {
                            partner.join(
                                || assert!(!(panicking_half == 0 && step == 50), "mine"),
                                || assert!(!(panicking_half == 1 && step == 50), "theirs"),
                            );
                        }
                    })
                })
            }));
            assert!(outcome.is_err(), "half {panicking_half} panicked");
        }
        // The pool is still usable: no thread is left spinning in a loop.
        assert_eq!(pool.install(|| with_partner(|_| 7)), 7);
    }
}
