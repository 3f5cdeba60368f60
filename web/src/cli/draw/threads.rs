//! The draw tools' [`Join`]: lets the `lottery` crate's independent pieces of work (leaf
//! parsing and hashing, the Merkle tree, the transcript hash beside the allocation) run on
//! the machine's cores.
//!
//! `lottery` is pure and never starts a thread (ARCHITECTURE.md, "lottery does no IO"); it
//! hands such work to a [`Join`] its caller passes in. This shell decides to use threads,
//! scoped to each call (`std::thread::scope`): no pool outlives a command, and a panic in
//! either half reaches the caller as it would without threads. Results never depend on
//! the join (the lottery tests run the same functions with `Sequential`).

use std::num::NonZeroUsize;

use lottery::parallel::Join;

/// Runs the second half of a [`Join::join`] on a scoped thread when there is more than one
/// core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Threads {
    pieces: usize,
}

impl Threads {
    /// As many pieces as the machine has cores.
    pub(crate) fn available() -> Threads {
        let pieces = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Threads { pieces }
    }
}

impl Join for Threads {
    fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA,
        B: FnOnce() -> RB + Send,
        RB: Send,
    {
        if self.pieces <= 1 {
            let ra = a();
            return (ra, b());
        }
        std::thread::scope(|scope| {
            let other = scope.spawn(b);
            let ra = a();
            let rb = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (ra, rb)
        })
    }

    fn pieces(&self) -> usize {
        self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_and_come_back_in_place() {
        for pieces in [1, 2] {
            let threads = Threads { pieces };
            let (a, b) = threads.join(|| 1 + 1, || "two".len());
            assert_eq!((a, b), (2, 3));
        }
    }
}
