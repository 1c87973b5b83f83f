//! The `tollgate` binary.

/// jemalloc instead of glibc's allocator: a request allocates and frees many small objects
/// (JSON, headers, guard state), which jemalloc serves in fewer instructions (~8 % fewer per
/// request and per stream), with a little less memory at rest (about the same with 1,000
/// open streams). mimalloc was faster still but held far more memory. Measured in
/// docs/benchmarks.md. The `system-alloc` feature keeps glibc's, for heap profilers.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    #[cfg(not(feature = "system-alloc"))]
    purge_in_background();
    tollgate::cli::main()
}

/// Has one jemalloc thread give freed memory back to the system ten seconds after it was
/// freed. Without it jemalloc purges only when a thread allocates again, so what start-up
/// freed (the tokenizer tables' construction, config parsing) and what a burst of streams
/// freed stays resident while tollgate idles: ~20 MB at rest and under 1,000 open streams
/// (docs/benchmarks.md, Memory). Failing to start the thread costs memory, not correctness,
/// so an error leaves jemalloc as it was.
#[cfg(not(feature = "system-alloc"))]
fn purge_in_background() {
    let _ = tikv_jemalloc_ctl::max_background_threads::write(1);
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
}

#[cfg(all(test, not(feature = "system-alloc")))]
mod tests {
    #[test]
    fn jemalloc_purges_on_a_thread_of_its_own() {
        assert_eq!(tikv_jemalloc_ctl::background_thread::read(), Ok(false));
        super::purge_in_background();
        assert_eq!(tikv_jemalloc_ctl::background_thread::read(), Ok(true));
        assert_eq!(tikv_jemalloc_ctl::max_background_threads::read(), Ok(1));
    }
}
