//! What every fuzz target shares: an allocator that turns unbounded allocation into a
//! finding. libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator hooks, which a
//! stable toolchain does not give us, so the limit is enforced here: a single allocation
//! over [`MAX_ALLOCATION`], or more than [`MAX_LIVE`] bytes held at once, aborts the run
//! with a message, and libFuzzer saves the input as a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Largest single allocation: far above any cap of the code under test (a 1 MiB milter
/// packet, a 1 MiB report budget, a 256 KiB message), so only a missing cap reaches it.
pub const MAX_ALLOCATION: usize = 64 << 20;
/// Most bytes held at once by the process (runtime, caches and input included).
pub const MAX_LIVE: usize = 512 << 20;

pub struct Limited;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts `added` bytes more held; true when `size` (the block asked for) or the total is
/// over its limit.
fn over(size: usize, added: usize) -> bool {
    size > MAX_ALLOCATION || LIVE.fetch_add(added, Relaxed) + added > MAX_LIVE
}

fn abort(what: &str, size: usize) -> ! {
    // No allocation here: this runs inside the allocator.
    let mut line = [0u8; 96];
    let mut n = what.len().min(64);
    line[..n].copy_from_slice(&what.as_bytes()[..n]);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = size;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    line[n..n + 20 - i].copy_from_slice(&digits[i..]);
    n += 20 - i;
    line[n] = b'\n';
    // SAFETY: writing a buffer we own to standard error.
    unsafe { libc_write(2, line.as_ptr(), n + 1) };
    std::process::abort();
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if over(layout.size(), layout.size()) {
            abort("fuzz: allocation over the limit, bytes: ", layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if over(layout.size(), layout.size()) {
            abort("fuzz: allocation over the limit, bytes: ", layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && over(new_size, new_size - layout.size()) {
            abort("fuzz: reallocation over the limit, bytes: ", new_size);
        }
        if new_size < layout.size() {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;
