/* ember_kernel.h — the internal interface between generated model code and the Ember runtime.
 *
 * Generated code includes this header and nothing else from Ember.  Every symbol declared here
 * is hidden: it is shared between the translation units of one artifact and never exported.
 *
 * What a generated model must define (once, in any of its translation units):
 *
 *   const char ember_model_metadata[];               JSON, see below
 *   const unsigned long long ember_model_arena_bytes; scratch bytes the entry needs (may be 0)
 *   int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs);
 *                                                    0 on success; on failure call ember_set_error
 *                                                    (optional) and return nonzero
 *
 * A model with symbolic dimensions also defines (the runtime has defaults for the others):
 *
 *   int ember_model_symbols(const char* const** names, const int64_t** bounds);
 *                                                    the number of symbols, their names and planning
 *                                                    sizes (what the arena is first sized for)
 *   int ember_model_shapes(const int64_t* const* in_shapes, int64_t* syms, int64_t* const* out_shapes);
 *                                                    binds syms from the input shapes, checks them
 *                                                    and the limits (0, or -1 after ember_set_error)
 *                                                    and, unless out_shapes is NULL, writes the
 *                                                    output shapes
 *   int ember_model_buffers(const int64_t** offsets, const int64_t** sizes, const int32_t** first,
 *                           const int32_t** last);   the intermediates of the arena: their offsets
 *                                                    and sizes at the planning sizes, and the first
 *                                                    and last kernel using each; returns their number
 *   void ember_model_buffer_sizes(const int64_t* syms, int64_t* sizes);
 *                                                    the bytes each intermediate needs for these
 *                                                    symbols (multiples of 64)
 *   int ember_model_entry_dynamic(unsigned char* arena, void* const* inputs, void* const* outputs,
 *                                 const int64_t* syms, const int64_t* offsets);
 *                                                    the entry, given the symbols' values and where
 *                                                    each intermediate lies in the arena
 *
 * A model that binds symbols from data during the run (bind_dims; see ember/driver/data_dims.py)
 * defines instead of ember_model_entry_dynamic:
 *
 *   int ember_model_entry_data(unsigned char* arena, void* const* inputs, void* const* outputs,
 *                              int64_t* syms, const int64_t* offsets, ember_blocks* blocks);
 *                                                    the entry: it writes the data symbols into syms
 *                                                    as it binds them, and reserves the run-time
 *                                                    blocks (ember_block_reserve) of the tensors
 *                                                    whose sizes they decide
 *   int ember_model_num_blocks(void);                how many run-time blocks it uses (>= 0)
 *   int ember_model_output_block(int i);             the block holding output i when the data
 *                                                    decides its shape (the runtime owns it), else -1
 *   void ember_model_output_dims(const int64_t* syms, int i, int64_t* shape);
 *                                                    output i's shape for the symbols of a run
 *
 * and, when it has constants, declare the blobs the toolchain assembles from raw bytes
 * (each one 64-byte aligned, read-only, hidden):
 *
 *   EMBER_HIDDEN extern const unsigned char ember_constants[];
 *
 * The metadata JSON is
 *   {"format": 1, "ember_version": "0.1.0", "name": "...", "target": "cpu",
 *    "inputs":  [{"name": "x", "dtype": "float32", "shape": [1, 3, 224, 224]}, ...],
 *    "outputs": [...same...],
 *    "arena_bytes": N, "constants_bytes": N, "weights_sha256": "<hex>", "kernels": N}
 * with numpy dtype names; the runtime parses "inputs" and "outputs" from it (both in C and in
 * Python), so no other table is needed.  A symbolic dimension is a string holding its expression
 * ("seq", "768*seq") and the model adds "symbols": [{"name": "seq", "bound": 512}, ...].  A cross
 * target's artifact also says "triple" and the processor "features" it requires (checked on load:
 * docs/design.md, "What an artifact says it is").
 *
 * Guarantees the runtime gives to the entry:
 *   - arena is 64-byte aligned, ember_model_arena_bytes long (for a model with symbols: long
 *     enough for offsets and this run's buffer sizes; it grows when a run needs more), zeroed
 *     when allocated and otherwise left as the previous run left it; one run at a time per arena;
 *   - syms holds the symbols' values for this run, each within its limit;
 *   - inputs[i] / outputs[i] are dense row-major buffers of the metadata's dtypes and shapes, in
 *     model order; they are only aligned to their element size (use unaligned vector loads and
 *     stores on them); inputs must not be written; outputs do not alias inputs or the arena;
 *   - worker threads run with stacks of at least 8 MiB.
 *
 * Run-time checks.  A kernel that indexes with data (gather: an index read from a tensor)
 * checks every such index (ember_index below).  The entry holds one ember_check per run, zeroed,
 * and passes its address to each kernel that checks, as the kernel's last argument; a failing
 * check records itself there (the first one of the run wins, from any thread of a parallel loop)
 * and the kernel carries on with a safe value (kernels first run with ember_index_fast, which
 * only sets a local flag, and run again with ember_index when it is set).  After each such
 * kernel the entry tests
 * ember_check_failed() and, when it is set, skips the remaining kernels and returns
 * ember_check_report(): the error message names the check's site (the generated table of site
 * strings, two per site: where, and what the index is for) and the value it refused.
 */
#ifndef EMBER_KERNEL_H
#define EMBER_KERNEL_H

#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include <string.h>

#define EMBER_HIDDEN __attribute__((visibility("hidden")))
#define EMBER_RESTRICT __restrict__
#define EMBER_LIKELY(x) __builtin_expect(!!(x), 1)
#define EMBER_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define EMBER_ALIGNED(p, n) __builtin_assume_aligned((p), (n))

#ifdef __cplusplus
extern "C" {
#endif

/* Defined by the generated code. */
EMBER_HIDDEN extern const char ember_model_metadata[];
EMBER_HIDDEN extern const unsigned long long ember_model_arena_bytes;
EMBER_HIDDEN int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs);
EMBER_HIDDEN int ember_model_symbols(const char* const** names, const int64_t** bounds);
EMBER_HIDDEN int ember_model_shapes(const int64_t* const* in_shapes, int64_t* syms, int64_t* const* out_shapes);
EMBER_HIDDEN int ember_model_buffers(const int64_t** offsets, const int64_t** sizes, const int32_t** first,
                                     const int32_t** last);
EMBER_HIDDEN void ember_model_buffer_sizes(const int64_t* syms, int64_t* sizes);
EMBER_HIDDEN int ember_model_entry_dynamic(unsigned char* arena, void* const* inputs, void* const* outputs,
                                           const int64_t* syms, const int64_t* offsets);

/* Statuses of a run beyond 0 and -1 (the same as ember_runtime.h's). */
#define EMBER_ERROR_SHAPE (-3)   /* the data gives an invalid dimension */
#define EMBER_ERROR_LIMIT (-4)   /* a tensor the data sizes is above the instance's tensor limit */

/* The run-time blocks of one model instance: tensors whose size the data decides. */
typedef struct ember_blocks {
    void** ptr;            /* count blocks, 64-byte aligned (NULL until first reserved) */
    int64_t* room;         /* the bytes each holds */
    int count;
    int data;              /* the model binds symbols from data (ember_model_entry_data) */
    int64_t max_bytes;     /* the largest one allowed (0: no limit) */
} ember_blocks;

/* Makes block j hold at least bytes (grown, its old contents dropped, when it holds less);
 * 0, or EMBER_ERROR_LIMIT / -1 after ember_set_error naming what (the tensor). */
EMBER_HIDDEN int ember_block_reserve(ember_blocks* b, int j, int64_t bytes, const char* what);
EMBER_HIDDEN int ember_model_entry_data(unsigned char* arena, void* const* inputs, void* const* outputs,
                                        int64_t* syms, const int64_t* offsets, ember_blocks* blocks);
EMBER_HIDDEN int ember_model_num_blocks(void);
EMBER_HIDDEN int ember_model_output_block(int i);
EMBER_HIDDEN void ember_model_output_dims(const int64_t* syms, int i, int64_t* shape);

/* Size arithmetic that saturates instead of wrapping (sizes of tensors the data decides). */
static inline int64_t ember_sat_mul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
static inline int64_t ember_sat_add(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* The default constants blob (defined by the toolchain when codegen passes a blob of this name). */
EMBER_HIDDEN extern const unsigned char ember_constants[];

/* The body of a parallel loop: runs iterations [begin, end). */
typedef void (*ember_range_fn)(void* ctx, int64_t begin, int64_t end);

/* Runs fn over [0, n) split into min(n, ember_parallel_threads()) contiguous chunks of sizes
 * differing by at most one, one call per chunk, on the runtime's thread pool with the calling
 * thread taking part; returns when every chunk is done.  Which thread runs which chunk is not
 * fixed.  n <= 0 does nothing.  Runs inline (one call fn(ctx, 0, n)) when n == 1, when one thread
 * is configured, when called from a chunk of another parallel region (nested loops run inline),
 * or when the pool is busy with a region of another host thread.  (A loop run inline because
 * n == 1 is no region: a loop nested in it may still run in parallel.) */
EMBER_HIDDEN void ember_parallel_for(int64_t n, ember_range_fn fn, void* ctx);

/* The number of threads a parallel region uses now (>= 1); a hint for choosing how to split. */
EMBER_HIDDEN int ember_parallel_threads(void);

/* Records the message ember_last_error() returns (printf-style); the entry then returns nonzero. */
EMBER_HIDDEN void ember_set_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* The state of the run-time checks of one run (see above).  failed is read and written
 * atomically; site, value and extent are written once, by the check that set failed, and read
 * after the kernel has returned (its parallel loops joined). */
typedef struct ember_check {
    int failed;          /* 0, or 1 once a check failed */
    int site;            /* which check: sites[2 * site] and sites[2 * site + 1] describe it */
    int64_t value;       /* the index it refused */
    int64_t extent;      /* the extent of the axis it indexes */
} ember_check;

/* Records a failed check unless one was recorded already (any thread; never blocks). */
EMBER_HIDDEN void ember_check_fail(ember_check* c, int site, int64_t value, int64_t extent)
    __attribute__((cold, noinline));

/* Sets the error message of the failed check c and returns the run's status (nonzero). */
EMBER_HIDDEN int ember_check_report(const ember_check* c, const char* const* sites);

static inline int ember_check_failed(const ember_check* c) { return __atomic_load_n(&c->failed, __ATOMIC_ACQUIRE); }

/* ember_index without the recording: a failed check sets *bad and gives 0.  Branch-free, so
 * loops of gathers stay vectorizable; a kernel writes its code with it and runs the code again
 * with ember_index only when *bad was set, to find which index failed. */
static inline int64_t ember_index_fast(int64_t i, int64_t n, int64_t* bad) {
    int64_t w = i < 0 ? i + n : i;
    int64_t ok = (uint64_t)w < (uint64_t)n;
    *bad |= ok ^ 1;
    return ok ? w : 0;
}

/* An index into an axis of n elements, negative ones counted from the end once: i + n for
 * i in [-n, 0), i for i in [0, n).  Any other i fails the check and gives 0 (an element that
 * exists when n > 0; a kernel indexing an axis that may be empty must not read with it then). */
static inline int64_t ember_index(ember_check* c, int site, int64_t i, int64_t n) {
    int64_t w = i < 0 ? i + n : i;
    if (EMBER_UNLIKELY((uint64_t)w >= (uint64_t)n)) {
        ember_check_fail(c, site, i, n);
        return 0;
    }
    return w;
}

#ifdef __cplusplus
}
#endif

#endif /* EMBER_KERNEL_H */
