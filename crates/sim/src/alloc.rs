//! The allocator of the `driftless` binary: mimalloc while it runs the simulator, the
//! system's otherwise.
//!
//! The simulator's shards allocate messages on one thread and free them on another; glibc's
//! malloc then takes the other thread's arena lock, and in a 100k run 11% of the CPU went to
//! that lock's futex and ~20% more to malloc, realloc and free. mimalloc frees across threads
//! without a lock (bench-100k 139 → 113 s of wall time). But the agent is the same binary,
//! and under mimalloc an idle agent holds 20 MB resident instead of 11 (SPEC's target: under
//! 15; mimalloc keeps pages per thread and size class): so the choice is made per process,
//! by the command it runs. The `simulate` and `bench` examples run nothing else and take
//! mimalloc directly ([`crate::MiMalloc`]).
//!
//! The choice is made at the first allocation, before `main`, from `/proc/self/cmdline` read
//! into a buffer on the stack (nothing may be allocated while the allocator decides), and
//! holds for the life of the process: every block is freed by the allocator that made it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// `#[global_allocator]` of the `driftless` binary: see the module's documentation.
pub struct PerCommand;

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Whether this process runs the simulator: mimalloc then. Decided once (two threads that
/// race here read the same command line and decide alike).
fn simulating() -> bool {
    match MODE.load(Ordering::Relaxed) {
        SYSTEM => false,
        MIMALLOC => true,
        _ => {
            let sim = command_is(b"simulate");
            MODE.store(if sim { MIMALLOC } else { SYSTEM }, Ordering::Relaxed);
            sim
        }
    }
}

/// Whether the first argument that is not a flag is `word`, read from `/proc/self/cmdline`
/// without allocating. False when it cannot be read (no /proc): the system's allocator.
#[cfg(target_os = "linux")]
fn command_is(word: &[u8]) -> bool {
    let mut buf = [0u8; 4096];
    // SAFETY: a NUL-terminated path, a buffer of the length given, and a descriptor closed
    // once read.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return false;
    }
    first_command(&buf[..n as usize]) == Some(word)
}

#[cfg(not(target_os = "linux"))]
fn command_is(_word: &[u8]) -> bool {
    false
}

/// The first argument after the program's name that does not start with `-`, from a
/// command line as the kernel keeps it (arguments each ended by a NUL).
fn first_command(cmdline: &[u8]) -> Option<&[u8]> {
    cmdline
        .split(|b| *b == 0)
        .skip(1)
        .find(|a| !a.is_empty() && !a.starts_with(b"-"))
}

// SAFETY: every call goes to one allocator for the whole process (`simulating` never changes
// its answer), so each block is resized and freed by the allocator that made it.
unsafe impl GlobalAlloc for PerCommand {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if simulating() {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if simulating() {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if simulating() {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if simulating() {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_command;

    #[test]
    fn the_command_is_the_first_argument_that_is_not_a_flag() {
        assert_eq!(
            first_command(b"/usr/bin/driftless\0simulate\0x.toml\0"),
            Some(&b"simulate"[..])
        );
        assert_eq!(
            first_command(b"driftless\0--verbose\0simulate\0"),
            Some(&b"simulate"[..])
        );
        assert_eq!(
            first_command(b"driftless\0agent\0--zone-bits\0simulate\0"),
            Some(&b"agent"[..])
        );
        assert_eq!(first_command(b"driftless\0--help\0"), None);
        assert_eq!(first_command(b"driftless\0"), None);
    }
}
