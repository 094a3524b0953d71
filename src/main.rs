/// mimalloc instead of glibc's malloc: a sync allocates and frees millions
/// of small strings and maps across threads, where glibc spent about a
/// quarter of a profiled run in its allocator and kept freed memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferry::cli::main()
}
