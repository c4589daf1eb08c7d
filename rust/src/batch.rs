//! Running one computation over many matrices on a thread pool of a chosen
//! size, with panics caught per matrix.
//!
//! Scheduling: a matrix that is at least `1/threads` of the batch's work
//! runs alone with every thread (faer parallelizes inside it); the others run
//! side by side, one matrix per thread and sequential inside, largest first so
//! that the pool ends together.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

use faer::Par;
use rayon::prelude::*;

use crate::error::Error;

/// The environment variable that sets the default number of threads.
pub const THREADS_ENV: &str = "GROKSPEC_NUM_THREADS";

/// The default thread count: `GROKSPEC_NUM_THREADS` if set, else every core
/// this process may use.
pub fn default_threads() -> Result<usize, Error> {
    match std::env::var(THREADS_ENV) {
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::InvalidArgument(format!(
                "{THREADS_ENV} must be a positive integer, got {value:?}"
            ))),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// A cached pool with exactly `threads` workers.
fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, Error> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("grokspec-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start {threads} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.insert(threads, Arc::clone(&pool));
    Ok(pool)
}

/// The relative cost of the spectrum of a `rows x cols` matrix (the Gram
/// product plus the eigensolver), used only to order and group work.
pub fn cost(rows: usize, cols: usize) -> f64 {
    let (long, short) = (rows.max(cols) as f64, rows.min(cols) as f64);
    long * short * short + 1.5 * short * short * short
}

/// Runs `work(i, par)` for every `i < costs.len()` on `threads` threads and
/// returns the results in order. A panic inside `work` becomes
/// `Error::Internal` for that item; the other items still run.
pub fn run<T: Send>(
    costs: &[f64],
    threads: usize,
    work: impl Fn(usize, Par) -> Result<T, Error> + Sync,
) -> Result<Vec<Result<T, Error>>, Error> {
    let threads = threads.max(1);
    let guarded = |i: usize, par: Par| {
        catch_unwind(AssertUnwindSafe(|| work(i, par))).unwrap_or_else(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(Error::Internal(message))
        })
    };
    let mut results: Vec<Option<Result<T, Error>>> = (0..costs.len()).map(|_| None).collect();
    if threads == 1 {
        for (i, slot) in results.iter_mut().enumerate() {
            *slot = Some(guarded(i, Par::Seq));
        }
    } else {
        let total: f64 = costs.iter().sum();
        let mut order: Vec<usize> = (0..costs.len()).collect();
        order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
        let (large, small): (Vec<usize>, Vec<usize>) = order
            .into_iter()
            .partition(|&i| costs.len() == 1 || costs[i] * threads as f64 >= total);
        pool(threads)?.install(|| {
            for &i in &large {
                results[i] = Some(guarded(i, Par::rayon(threads)));
            }
            let done: Vec<(usize, Result<T, Error>)> = small
                .par_iter()
                .map(|&i| (i, guarded(i, Par::Seq)))
                .collect();
            for (i, result) in done {
                results[i] = Some(result);
            }
        });
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_schedule() {
        let costs = [1.0, 100.0, 3.0, 2.0, 50.0];
        for threads in [1, 2, 3] {
            let out = run(&costs, threads, |i, _| Ok(i * 10)).unwrap();
            let values: Vec<usize> = out.into_iter().map(Result::unwrap).collect();
            assert_eq!(values, vec![0, 10, 20, 30, 40]);
        }
    }

    #[test]
    fn a_panic_becomes_an_error_for_that_item_only() {
        let costs = [1.0; 4];
        let out = run(&costs, 2, |i, _| {
            if i == 2 { panic!("boom at {i}") } else { Ok(i) }
        })
        .unwrap();
        assert!(matches!(&out[2], Err(Error::Internal(m)) if m.contains("boom at 2")));
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 3);
    }

    #[test]
    fn large_items_get_every_thread() {
        let costs = [1000.0, 1.0, 1.0];
        let out = run(&costs, 2, |_, par| Ok(par.degree())).unwrap();
        assert_eq!(out[0].as_ref().unwrap(), &2);
        assert_eq!(out[1].as_ref().unwrap(), &1);
    }
}
