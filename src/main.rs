/// mimalloc instead of glibc's malloc: a sync allocates and frees millions
/// of small strings and maps across threads, where glibc spent about a
/// quarter of a profiled run in its allocator and kept freed memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay`: position 15 of `mi_option_e` in both the v2 and
/// v3 mimalloc headers that libmimalloc-sys 0.1.49 builds. Check it when
/// that crate changes.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> std::process::ExitCode {
    // mimalloc returns freed pages to the system 10 ms after they empty,
    // and a sync frees and refills the same pages once per chunk: the
    // kernel then spent a sixth of a profiled run zeroing pages again.
    // Two seconds keeps pages across chunks and still gives memory back
    // to the system soon after a run.
    // SAFETY: sets an integer option; mimalloc reads options atomically.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 2_000) };
    ferry::cli::main()
}
