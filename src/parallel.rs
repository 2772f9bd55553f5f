//! Data parallelism over rows. candle's own CPU threading (a spin-barrier pool for element-wise
//! ops, rayon for gemm) costs more than it gains on the many small ops of a transformer:
//! measured on 2 cores, forward 440 tok/s with 2 threads against 480 with 1, LoRA training 143
//! against 167. So model work runs each candle op on one thread and splits batches across cores
//! itself (forward 629 tok/s, LoRA training 281).

use anyhow::{Result, anyhow};

/// How many rows-parts run at once: one per core.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Makes candle run each op on the calling thread (its element-wise pool and its gemm, which
/// goes through rayon), unless the user set these variables. Not for MPC work: the engine's
/// kernels use rayon and gain from it. candle reads its thread counts only from these
/// environment variables (no API sets them), so this writes the process environment.
///
/// # Safety
/// No other thread may exist: writing the environment races with any concurrent read (Rust's
/// or C's `getenv`). Call it first thing in `main`. Calling it without `unsafe` does not compile:
///
/// ```compile_fail,E0133
/// marill::parallel::use_single_threaded_ops();
/// ```
pub unsafe fn use_single_threaded_ops() {
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            // SAFETY: the caller guarantees that no other thread exists.
            unsafe { std::env::set_var(var, "1") };
        }
    }
}

/// Splits `rows` into up to [`workers`] contiguous parts and runs `f(part index, part)` on each
/// in its own thread; results come back in part order.
pub fn map_parts<T: Send>(
    rows: &[usize],
    f: impl Fn(usize, &[usize]) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let parts = workers().min(rows.len()).max(1);
    let chunks: Vec<&[usize]> = rows.chunks(rows.len().div_ceil(parts).max(1)).collect();
    if chunks.len() <= 1 {
        return chunks.into_iter().map(|c| f(0, c)).collect();
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| scope.spawn(move || f(i, c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a worker thread panicked"))?)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_rows_in_order() -> Result<()> {
        let rows: Vec<usize> = (0..7).collect();
        let parts = map_parts(&rows, |i, part| Ok((i, part.to_vec())))?;
        let joined: Vec<usize> = parts.iter().flat_map(|(_, p)| p.clone()).collect();
        assert_eq!(joined, rows);
        assert!(parts.iter().enumerate().all(|(k, (i, _))| k == *i));
        Ok(())
    }
}
