//! The simulation's worker threads: one rayon pool, sized by `--threads`
//! (env `DUALPLANE_THREADS`; default: the cores available, at most
//! [`DEFAULT_CAP`]). rapier's `parallel` feature splits its step across the
//! pool of the thread that calls it; sim-core itself starts no thread. The
//! world's hashes do not depend on the count (tests/threads compares 1 and
//! 2 threads hash line by hash line).

use std::sync::OnceLock;

/// The default never takes more than this many cores.
pub const DEFAULT_CAP: usize = 8;

/// Most threads a pool may have (a typo such as 10000 is refused, not obeyed).
pub const MAX: usize = 256;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

/// The thread count for `requested` (None: the default).
#[must_use]
pub fn count(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(DEFAULT_CAP))
}

/// Checks a `--threads` value (clap value parser).
pub fn parse(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("expected a thread count (1 to {MAX}), found {s:?}: {e}"))?;
    if !(1..=MAX).contains(&n) {
        return Err(format!("expected a thread count from 1 to {MAX}, found {n}"));
    }
    Ok(n)
}

/// A pool of `n` threads named `{name}-{i}`.
pub fn pool(n: usize, name: &'static str) -> anyhow::Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(move |i| format!("{name}-{i}")).build()?)
}

/// How much lower than the tick thread replication runs (a nice value).
pub const BACKGROUND_NICE: i32 = 5;

/// A pool of `n` threads named `{name}-{i}` that run at
/// [`BACKGROUND_NICE`]: on a saturated machine the tick thread is
/// scheduled before them, so a late snapshot is what gives, not the tick.
pub fn background_pool(n: usize, name: &'static str) -> anyhow::Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(move |i| format!("{name}-{i}")).start_handler(|_| lower_priority()).build()?)
}

/// Lowers the calling thread's scheduling priority by [`BACKGROUND_NICE`]
/// (raising a nice value needs no privilege; on Linux it applies to the
/// thread, not the process). Best effort: a refusal changes nothing else.
pub fn lower_priority() {
    set_nice(BACKGROUND_NICE);
}

/// The nice value simulation threads ask for: above everything else in
/// the process and on the machine (bots, sidecars, log shippers), so that
/// on a saturated machine the tick is the last thing to wait.
pub const TICK_NICE: i32 = -10;

static RAISED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The nice value of the thread that built the simulation pool (the
/// process's own).
static BASE_NICE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Sets the calling thread's nice value (Linux: per thread); whether it
/// was allowed.
fn set_nice(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority reads only its integer arguments; who = 0 is
        // the calling thread on Linux.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// Raises the calling thread's priority to [`TICK_NICE`]. That needs
/// CAP_SYS_NICE (or root); without it nothing changes and [`raised`]
/// says so.
fn raise_priority() {
    if set_nice(TICK_NICE) {
        RAISED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `f` with the calling simulation thread back at the process's own
/// priority, then raises it again: threads `f` starts (a replay writer
/// opened at a join, a replay closer) would otherwise inherit the raised
/// one (a new Linux thread copies its creator's nice value).
pub fn spawning_unraised<R>(f: impl FnOnce() -> R) -> R {
    if !raised() || POOL.get().and_then(rayon::ThreadPool::current_thread_index).is_none() {
        return f();
    }
    set_nice(BASE_NICE.load(std::sync::atomic::Ordering::Relaxed));
    let r = f();
    set_nice(TICK_NICE);
    r
}

/// Whether the simulation threads run at [`TICK_NICE`] (else at the
/// process's own priority: raising needs CAP_SYS_NICE).
#[must_use]
pub fn raised() -> bool {
    RAISED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets the process's simulation thread count (once, at start): the pool
/// [`install`] runs in, and rayon's global pool for any other caller.
pub fn init(requested: Option<usize>) -> anyhow::Result<usize> {
    let n = count(requested);
    // The global pool is set once per process; a second init (tests) keeps
    // the first.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("rayon-{i}")).build_global();
    if POOL.get().is_none() {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: getpriority reads only its integer arguments (-1 is
            // also a valid nice value; errno is not consulted: 0 is the
            // fallback where the call fails).
            let base = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            BASE_NICE.store(base, std::sync::atomic::Ordering::Relaxed);
        }
        let sim = rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("sim-{i}")).start_handler(|_| raise_priority()).build()?;
        // Every thread has started (and run its start handler) once this returns.
        sim.broadcast(|_| ());
        let _ = POOL.set(sim);
    }
    Ok(threads())
}

/// The simulation pool's thread count.
#[must_use]
pub fn threads() -> usize {
    POOL.get().map_or_else(rayon::current_num_threads, rayon::ThreadPool::current_num_threads)
}

/// Runs `f` on the simulation pool (its calls into rapier then split across
/// the pool without a hand-off per call).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match POOL.get() {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// CPU time the calling thread has used, in nanoseconds (Linux: its
/// CPUTIME clock; elsewhere, and where the call fails, 0). What a piece
/// of work costs in CPU, unlike its wall time, does not grow when the
/// scheduler time-slices its thread with another on one core.
#[must_use]
pub fn thread_cpu_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes only the timespec it is handed.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) } == 0 {
            return u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0);
        }
        0
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}
