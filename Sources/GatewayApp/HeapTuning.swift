import CHeap

/// glibc raises its mmap threshold each time a large block is freed, up to 32 MiB; after that, blob-sized buffers
/// (a megabyte or more, allocated and freed all the time) come from the heap arenas, which fragment and do not give
/// memory back. A fixed threshold keeps every buffer of 128 KiB or more in its own mapping, returned on free, so
/// resident memory follows what is live: the throughput benchmark peaked at about 210 MiB instead of 290–330 MiB,
/// at the same CPU cost (docs/benchmarks.md). Applied once at startup, whatever the subcommand.
public enum HeapTuning {
    public static func apply() {
        _ = o365gw_set_mmap_threshold(128 * 1024)
    }
}
