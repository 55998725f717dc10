//! Room on the stack for the deepest tree a path can name.
//!
//! The blit and the removal go down a tree by recursion, a few frames per directory level
//! (`fill`, `rayon::join`, `subdir` in one; `remove_entry`, `par_iter`, `remove_contents`
//! in the other), and their tasks run on rayon's threads, whose stacks are 2 MiB. A
//! layout may hold a 4,095-byte path, 2,047 directories deep; a package with a directory
//! 1,000 levels deep overflowed those stacks and killed the process mid-commit. Both walks
//! therefore run on a pool of their own whose threads have room for [`MAX_DEPTH`] levels.
//! A stack is address space until it is touched, so a shallow tree costs no more memory
//! than before.

use std::sync::OnceLock;

/// Deeper than any path that fits in `PATH_MAX` (each level costs at least two bytes):
/// reaching it in a state's tree means the tree loops, which only a damaged database can
/// make, and on disk it is a tree no package can have made.
pub(crate) const MAX_DEPTH: usize = 2048;

/// The stack of each thread of the pool. A level takes a few kilobytes in a release build
/// and several times that in a debug one; this holds [`MAX_DEPTH`] levels of either with
/// room to spare.
const STACK: usize = 64 << 20;

/// Runs `f` on the deep-stack pool, and waits for it. Work `f` hands to rayon (`join`,
/// `par_iter`) stays on that pool. Should the pool's threads fail to start, `f` runs where
/// it was called, as it did before the pool existed.
pub(crate) fn deep_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .stack_size(STACK)
            .thread_name(|i| format!("mossfs-tree-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}
