//! A global allocator that counts allocations, so benchmarks can report heap
//! allocations per tick (the rule: none on the hot path in our own code),
//! and the bytes live on the heap, so a leak can be told from the
//! allocator's fragmentation (which grows RSS, not these bytes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated through Rust's allocator and not yet freed (C libraries'
/// own mallocs, zstd's say, are not seen: RSS covers them). Never below
/// zero: a block is freed only after its pointer reached the freeing thread,
/// which orders its add first; a shrinking realloc adds a wrapped negative.
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts `size` bytes live if the allocation `p` succeeded.
fn live(p: *mut u8, size: usize) -> *mut u8 {
    if !p.is_null() {
        LIVE_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
    p
}

#[derive(Debug)]
pub struct CountingAlloc;

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        live(unsafe { System.alloc(layout) }, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        live(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // The old block is freed, the new one live (wrapping sum).
            LIVE_BYTES.fetch_add((new_size as u64).wrapping_sub(layout.size() as u64), Ordering::Relaxed);
        }
        p
    }
}

/// Allocations (including reallocations) so far in this process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes live on the heap now, when this allocator is the process's global
/// one (the `dualplane` binary); `None` in a process that does not install
/// it (nothing counted).
pub fn live_bytes() -> Option<u64> {
    (allocations() > 0).then(|| LIVE_BYTES.load(Ordering::Relaxed))
}
