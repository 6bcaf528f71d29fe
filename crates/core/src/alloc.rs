//! The broker's global allocator: the system allocator, except that huge
//! allocations are reserved lazily.
//!
//! Why: kafka-protocol 0.18's decoders call `Vec::with_capacity(n)` with `n`
//! read from the request (upstream kafka-protocol-rs#152/#161/#200), so a
//! ten-byte request can ask for 100+ GB before the decoder notices the
//! elements are missing. The system allocator refuses that, and Rust aborts
//! the process on allocation failure. Allocations of `lazy_bytes_min` and up
//! (nothing the broker legitimately allocates is that large: frames are
//! capped at 100 MiB, commit buffers at 16 MiB) are instead mapped with
//! MAP_NORESERVE: the kernel reserves address space only, pages come into
//! being when touched, and a decode that fails after a few elements touches
//! almost none. Memory actually used stays bounded by the decoded input.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped lazily.
pub const lazy_bytes_min: usize = 1024 * 1024 * 1024;

pub struct LazyHugeAlloc;

unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < lazy_bytes_min || layout.align() > 4096 {
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping; page alignment covers align <= 4096.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            address.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < lazy_bytes_min || layout.align() > 4096 {
            return unsafe { System.alloc_zeroed(layout) };
        }
        // Fresh anonymous pages read as zero: no need to touch them.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < lazy_bytes_min || layout.align() > 4096 {
            return unsafe { System.dealloc(ptr, layout) };
        }
        // SAFETY: `ptr` came from the mmap above with this size.
        unsafe {
            libc::munmap(ptr.cast(), layout.size());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let lazy_before = layout.size() >= lazy_bytes_min && layout.align() <= 4096;
        let lazy_after = new_size >= lazy_bytes_min && layout.align() <= 4096;
        if !lazy_before && !lazy_after {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing the threshold: allocate, copy, free.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_lazy_and_usable() {
        let alloc = LazyHugeAlloc;
        let layout = Layout::from_size_align(64 * lazy_bytes_min, 8).unwrap(); // 64 GiB
        unsafe {
            let ptr = alloc.alloc(layout);
            assert!(!ptr.is_null(), "a lazy 64 GiB reservation succeeds");
            *ptr = 7;
            *ptr.add(layout.size() - 1) = 9;
            assert_eq!((*ptr, *ptr.add(layout.size() - 1)), (7, 9));
            alloc.dealloc(ptr, layout);
        }
    }
}
