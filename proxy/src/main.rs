//! The `tollgate` binary.

/// jemalloc instead of glibc's allocator: a request allocates and frees many small objects
/// (JSON, headers, guard state), which jemalloc serves in fewer instructions (~8 % fewer per
/// request and per stream), with a little less memory at rest (about the same with 1,000
/// open streams). mimalloc was faster still but held far more memory. Measured in
/// docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tollgate::cli::main()
}
