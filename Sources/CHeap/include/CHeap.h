// glibc's malloc tuning (mallopt), which Swift's Glibc module does not export. Used by GatewayApp's HeapTuning.
#ifndef O365GW_CHEAP_H
#define O365GW_CHEAP_H

#if defined(__linux__) && __has_include(<malloc.h>)
#include <malloc.h>

/// Keeps allocations of `bytes` or more in their own mappings, returned to the system when freed (and stops glibc
/// from raising that threshold as large blocks are freed). Returns 1 on success.
static inline int o365gw_set_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

/// What the heap holds, in bytes: `inUse` by live allocations in the arenas, `free` kept by the arenas (freed but
/// not returned to the system), `mapped` in blocks of their own.
static inline void o365gw_heap_usage(size_t *inUse, size_t *free, size_t *mapped) {
    struct mallinfo2 info = mallinfo2();
    *inUse = info.uordblks; *free = info.fordblks; *mapped = info.hblkhd;
}
/// Returns the arenas' free memory to the system; 1 if some was.
static inline int o365gw_heap_trim(void) { return malloc_trim(0); }
#else
static inline int o365gw_set_mmap_threshold(int bytes) { (void)bytes; return 0; }
static inline void o365gw_heap_usage(size_t *inUse, size_t *free, size_t *mapped) { *inUse = 0; *free = 0; *mapped = 0; }
static inline int o365gw_heap_trim(void) { return 0; }
#endif

#endif
