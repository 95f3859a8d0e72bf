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

extension HeapTuning {
    /// What the heap holds, in MiB: by live allocations in the arenas, kept free by the arenas (freed, not returned
    /// to the system), and in mappings of their own.
    public struct Usage: Sendable, CustomStringConvertible {
        public var inUseMiB: Int
        public var freeMiB: Int
        public var mappedMiB: Int
        public var description: String { "\(inUseMiB) MiB live in arenas, \(freeMiB) MiB free in arenas, \(mappedMiB) MiB mapped" }
    }

    public static func usage() -> Usage {
        var inUse = 0, free = 0, mapped = 0
        o365gw_heap_usage(&inUse, &free, &mapped)
        return Usage(inUseMiB: inUse >> 20, freeMiB: free >> 20, mappedMiB: mapped >> 20)
    }

    /// Gives the arenas' free memory back to the system.
    public static func trim() { _ = o365gw_heap_trim() }
}
