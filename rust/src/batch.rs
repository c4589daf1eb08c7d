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
        Err(_) => Ok(cores()),
    }
}

/// Every core this process may use, asked once: `available_parallelism`
/// reads the cgroup's CPU quota from /proc and /sys on every call (~0.1 ms,
/// most of a small matrix's whole call).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A cached pool with exactly `threads` workers.
pub(crate) fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, Error> {
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

/// Matrices handed to one worker together, at most (their tridiagonal
/// problems are solved in lockstep, up to eight at a time, see `tridiagonal`).
pub const CHUNK: usize = 8;

/// Only matrices up to the cost of a 1024 x 1024 one are chunked: that is
/// where the latency-bound tridiagonal iteration matters, and a chunk keeps
/// all its inputs in memory at once (a chunk of large mapped tensors would
/// multiply the scan's resident memory).
pub fn chunkable(cost: f64) -> bool {
    cost <= self::cost(1024, 1024)
}

/// Whether an item is worth splitting across threads. Below a 176 x 176
/// matrix the parallel route's start-up costs more than it saves: a lone
/// square float32 matrix through `spectral_entropy` on one thread / two
/// (2-core AMD EPYC, µs, medians of 200): 64² 112 / 208, 128² 454 / 589,
/// 160² 753 / 836, 176² 940 / 990, 192² 1421 / 1198; tall and thin,
/// 100000 x 2, 1966 / 2631.
fn worth_splitting(cost: f64) -> bool {
    cost > self::cost(176, 176)
}

/// `items` cut into chunks of at most `CHUNK`, as many chunks as a multiple
/// of `threads` allows and sizes that differ by at most one, so that every
/// thread gets the same share (37 items on 2 threads: six chunks of 6-7, not
/// five of 8 and one of 5).
fn balanced_chunks(items: &[usize], threads: usize) -> impl Iterator<Item = &[usize]> {
    let count = threads * items.len().div_ceil(threads * CHUNK);
    let (base, extra) = (items.len() / count.max(1), items.len() % count.max(1));
    let mut start = 0;
    (0..count).filter_map(move |k| {
        let len = base + usize::from(k < extra);
        let chunk = &items[start..start + len];
        start += len;
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// Runs `work(indices, par)` over chunks of the items `0..costs.len()` on
/// `threads` threads and returns the results in item order. `work` returns
/// one result per index it was given. A panic inside `work` becomes
/// `Error::Internal` for the items of that chunk; the others still run.
///
/// Large items (at least `1/threads` of the total cost) run one at a time
/// with every thread; the rest run side by side, sequential inside, largest
/// first, in chunks of up to `CHUNK` similar-sized items (at most one chunk
/// per thread's share, so that every thread gets work).
pub fn run<T: Send>(
    costs: &[f64],
    threads: usize,
    work: impl Fn(&[usize], Par) -> Vec<Result<T, Error>> + Sync,
) -> Result<Vec<Result<T, Error>>, Error> {
    let threads = threads.max(1);
    let guarded = |chunk: &[usize], par: Par| -> Vec<(usize, Result<T, Error>)> {
        match catch_unwind(AssertUnwindSafe(|| work(chunk, par))) {
            Ok(results) => {
                assert_eq!(results.len(), chunk.len(), "one result per item");
                chunk.iter().copied().zip(results).collect()
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                chunk
                    .iter()
                    .map(|&i| (i, Err(Error::Internal(message.clone()))))
                    .collect()
            }
        }
    };
    let total: f64 = costs.iter().sum();
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    let (large, small): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|&i| {
        threads > 1
            && worth_splitting(costs[i])
            && (costs.len() == 1 || costs[i] * threads as f64 >= total)
    });
    let (single, chunked): (Vec<usize>, Vec<usize>) =
        small.into_iter().partition(|&i| !chunkable(costs[i]));
    let chunks: Vec<&[usize]> = single
        .chunks(1)
        .chain(balanced_chunks(&chunked, threads))
        .collect();
    let mut results: Vec<Option<Result<T, Error>>> = (0..costs.len()).map(|_| None).collect();
    let mut store = |done: Vec<(usize, Result<T, Error>)>| {
        for (i, result) in done {
            results[i] = Some(result);
        }
    };
    // One chunk and nothing to split runs on the calling thread: handing it
    // to the pool would only add the hand-over.
    if threads == 1 || (large.is_empty() && chunks.len() <= 1) {
        chunks
            .iter()
            .for_each(|chunk| store(guarded(chunk, Par::Seq)));
    } else {
        pool(threads)?.install(|| {
            for &i in &large {
                store(guarded(&[i], Par::rayon(threads)));
            }
            let done: Vec<Vec<(usize, Result<T, Error>)>> = chunks
                .par_iter()
                .map(|chunk| guarded(chunk, Par::Seq))
                .collect();
            done.into_iter().for_each(&mut store);
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
            let out = run(&costs, threads, |chunk, _| {
                chunk.iter().map(|&i| Ok(i * 10)).collect()
            })
            .unwrap();
            let values: Vec<usize> = out.into_iter().map(Result::unwrap).collect();
            assert_eq!(values, vec![0, 10, 20, 30, 40]);
        }
    }

    #[test]
    fn a_panic_becomes_an_error_for_its_chunk_only() {
        let panicking = |chunk: &[usize], _| -> Vec<Result<usize, Error>> {
            chunk
                .iter()
                .map(|&i| if i == 2 { panic!("boom at {i}") } else { Ok(i) })
                .collect()
        };
        // Four threads for four items: chunks of one, so only item 2 fails.
        let out = run(&[1.0; 4], 4, panicking).unwrap();
        assert!(matches!(&out[2], Err(Error::Internal(m)) if m.contains("boom at 2")));
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 3);
        // Sixteen items on two threads: two chunks of eight; the panic takes its chunk down.
        let out = run(&[1.0; 16], 2, panicking).unwrap();
        assert_eq!(out.iter().filter(|r| r.is_err()).count(), CHUNK);
        assert!(
            out.iter()
                .all(|r| r.is_ok() || matches!(r, Err(Error::Internal(m)) if m.contains("boom")))
        );
        assert!(out[2].is_err());
    }

    #[test]
    fn many_small_items_are_chunked_but_every_thread_gets_work() {
        let sizes = |n: usize, threads: usize| {
            let costs = vec![1.0; n];
            let seen = std::sync::Mutex::new(Vec::new());
            run(&costs, threads, |chunk, _| {
                seen.lock().unwrap().push(chunk.len());
                chunk.iter().map(|_| Ok(())).collect()
            })
            .unwrap();
            let mut seen = seen.into_inner().unwrap();
            seen.sort_unstable();
            seen
        };
        assert_eq!(sizes(128, 2), vec![CHUNK; 128 / CHUNK]);
        assert_eq!(sizes(3, 2), vec![1, 2]);
        assert_eq!(sizes(7, 2), vec![3, 4]);
        assert_eq!(sizes(1, 4), vec![1]);
        // Every thread gets the same number of chunks of nearly equal size.
        assert_eq!(sizes(37, 2), vec![6, 6, 6, 6, 6, 7]);
        assert_eq!(sizes(20, 3), vec![6, 7, 7]);
        // Large matrices are never chunked.
        let big = vec![cost(4096, 4096); 16];
        let seen = std::sync::Mutex::new(Vec::new());
        run(&big, 2, |chunk, _| {
            seen.lock().unwrap().push(chunk.len());
            chunk.iter().map(|_| Ok(())).collect()
        })
        .unwrap();
        assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1));
    }

    #[test]
    fn large_items_get_every_thread() {
        let costs = [cost(1024, 1024), 1.0, 1.0];
        let out = run(&costs, 2, |chunk, par| {
            chunk.iter().map(|_| Ok(par.degree())).collect()
        })
        .unwrap();
        assert_eq!(out[0].as_ref().unwrap(), &2);
        assert_eq!(out[1].as_ref().unwrap(), &1);
    }

    #[test]
    fn a_lone_small_matrix_runs_on_the_calling_thread() {
        // (degree of parallelism, whether on a pool's worker) per item.
        let schedule = |costs: &[f64]| -> Vec<(usize, bool)> {
            run(costs, 2, |chunk, par| {
                let on_pool = rayon::current_thread_index().is_some();
                chunk.iter().map(|_| Ok((par.degree(), on_pool))).collect()
            })
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect()
        };
        assert_eq!(schedule(&[cost(128, 128)]), vec![(1, false)]);
        assert_eq!(schedule(&[cost(100_000, 2)]), vec![(1, false)]);
        assert_eq!(schedule(&[cost(176, 176)]), vec![(1, false)]);
        assert_eq!(schedule(&[cost(192, 192)]), vec![(2, true)]);
        // Two small items still share the pool's threads.
        assert_eq!(schedule(&[cost(128, 128); 2]), vec![(1, true); 2]);
    }
}
