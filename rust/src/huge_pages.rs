//! Transparent huge pages for the engine's large buffers.
//!
//! Most Linux systems ship with transparent huge pages in `madvise` mode: a
//! process gets 2 MiB pages only where it asks for them. The engine's Gram
//! matrix and band-reduction workspace are tens to hundreds of MiB walked
//! column by column, so with 4 KiB pages every column step is a TLB miss.
//! This allocator asks for huge pages (`MADV_HUGEPAGE`) on every allocation of
//! at least [`ADVISED_FROM`] bytes, before the memory is first touched; what
//! it returns is otherwise exactly the system allocator's. Measured on an AMD
//! EPYC (Zen 3, AVX2, 2 threads), a float32 2048² spectrum took 0.44 s instead
//! of 0.49 s (see docs/PERFORMANCE.md).
//!
//! `GROKSPEC_HUGE_PAGES=0` turns the advice off (read once, at the first large
//! allocation). Elsewhere than Linux this is the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU8, Ordering};

/// Allocations from this size on are advised (smaller ones would round up
/// to a huge page mostly unused).
pub const ADVISED_FROM: usize = 4 << 20;

/// The environment variable that turns the advice off when set to `0`
/// (a C string: it is read with `getenv`, see `enabled`).
pub const HUGE_PAGES_ENV: &std::ffi::CStr = c"GROKSPEC_HUGE_PAGES";

/// The system allocator, advising huge pages for large allocations.
#[derive(Debug)]
pub struct HugePageAllocator;

// SAFETY: every method forwards to `System` with the same arguments; the
// advice only changes how the kernel backs the pages, never their contents.
unsafe impl GlobalAlloc for HugePageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        advise(new, new_size);
        new
    }
}

#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, size: usize) {
    const HUGE_PAGE: usize = 2 << 20;
    if ptr.is_null() || size < ADVISED_FROM || !enabled() {
        return;
    }
    // Only whole huge pages inside the allocation: the advice must not
    // reach memory that belongs to someone else.
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) & !(HUGE_PAGE - 1);
    if end > start {
        // SAFETY: [start, end) lies inside the allocation just made, and
        // madvise(MADV_HUGEPAGE) neither reads nor writes memory. A failure
        // (a kernel without THP) leaves ordinary pages, which is fine.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_ptr: *mut u8, _size: usize) {}

/// Whether the advice is on: not when `GROKSPEC_HUGE_PAGES=0`. Read with
/// `getenv`, which does not allocate (this runs inside the allocator).
#[cfg(target_os = "linux")]
fn enabled() -> bool {
    static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 on, 2 off
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: a NUL-terminated name; the value is only read here.
            let value = unsafe { libc::getenv(HUGE_PAGES_ENV.as_ptr()) };
            // SAFETY: getenv returns null or a NUL-terminated string.
            let off =
                !value.is_null() && unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes() == b"0";
            STATE.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_allocations_hold_what_is_written() {
        for size in [
            64,
            ADVISED_FROM - 1,
            ADVISED_FROM,
            ADVISED_FROM + 12345,
            3 * ADVISED_FROM,
        ] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: a non-zero layout; the memory is freed with the same layout.
            unsafe {
                let ptr = HugePageAllocator.alloc_zeroed(layout);
                assert!(!ptr.is_null());
                assert!(
                    std::slice::from_raw_parts(ptr, size)
                        .iter()
                        .all(|&b| b == 0)
                );
                ptr.write_bytes(7, size);
                let grown = HugePageAllocator.realloc(ptr, layout, size * 2);
                let grown_slice = std::slice::from_raw_parts(grown, size);
                assert!(
                    grown_slice.iter().all(|&b| b == 7),
                    "realloc keeps the contents"
                );
                HugePageAllocator.dealloc(grown, Layout::from_size_align(size * 2, 64).unwrap());
            }
        }
    }

    /// Huge pages (KiB) backing `[address, address + size)`: the sum of
    /// `AnonHugePages` over the mappings it overlaps in /proc/self/smaps (the
    /// advice splits a mapping, so the allocation spans several).
    #[cfg(target_os = "linux")]
    fn anon_huge_kib_within(address: usize, size: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut total = 0;
        for line in smaps.lines() {
            let first = line.split(' ').next().unwrap_or_default();
            if let Some((lo, hi)) = first.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo < address + size && address < hi;
            } else if inside && let Some(rest) = line.strip_prefix("AnonHugePages:") {
                total += rest
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        total
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_allocation_gets_huge_pages_where_the_kernel_gives_them_on_request() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !mode.contains("[madvise]") || !enabled() {
            return; // "always" backs every allocation, "never" none: nothing to tell apart
        }
        let size = 64 << 20;
        let layout = Layout::from_size_align(size, 64).unwrap();
        let huge_kib = |ptr: *mut u8| {
            // SAFETY: a fresh allocation of `size` bytes, written before it is measured.
            unsafe { ptr.write_bytes(1, size) };
            anon_huge_kib_within(ptr as usize, size)
        };
        // SAFETY: non-zero layouts, each freed with the allocator that made it.
        let (advised, plain) = unsafe {
            let (a, p) = (HugePageAllocator.alloc(layout), System.alloc(layout));
            let counts = (huge_kib(a), huge_kib(p));
            HugePageAllocator.dealloc(a, layout);
            System.dealloc(p, layout);
            counts
        };
        assert_eq!(
            plain, 0,
            "without the advice a madvise-mode kernel gives 4 KiB pages"
        );
        // The kernel may fall short of huge pages on fragmented memory, but
        // not of all 31 that fit inside 64 MiB.
        assert!(
            advised >= 2048,
            "advised allocation got {advised} KiB of huge pages"
        );
    }
}
