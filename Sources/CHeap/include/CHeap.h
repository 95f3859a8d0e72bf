// glibc's malloc tuning (mallopt), which Swift's Glibc module does not export. Used by GatewayApp's HeapTuning.
#ifndef O365GW_CHEAP_H
#define O365GW_CHEAP_H

#if defined(__linux__) && __has_include(<malloc.h>)
#include <malloc.h>

/// Keeps allocations of `bytes` or more in their own mappings, returned to the system when freed (and stops glibc
/// from raising that threshold as large blocks are freed). Returns 1 on success.
static inline int o365gw_set_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }
#else
static inline int o365gw_set_mmap_threshold(int bytes) { (void)bytes; return 0; }
#endif

#endif
