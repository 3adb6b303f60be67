/* blocks.c — the run-time blocks of tensors whose size the data decides (see ember_kernel.h).
 *
 * A model that binds symbols from data during a run (bind_dims) cannot place the tensors those
 * symbols size in its arena, planned before the run: each gets a block of its own per model
 * instance, reserved by the entry once its size is known, kept across runs and grown when a run
 * needs more.  Outputs whose shape the data decides stay in their block after the run (the
 * runtime owns them; ember_model_output in runtime.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember_kernel.h"

/* A model without data symbols: -1 (a model's own definitions win; one with data symbols
 * returns its number of blocks, possibly 0). */
__attribute__((weak)) int ember_model_num_blocks(void) { return -1; }

__attribute__((weak)) int ember_model_output_block(int i) {
    (void)i;
    return -1;
}

int ember_block_reserve(ember_blocks* b, int j, int64_t bytes, const char* what) {
    if (j < 0 || j >= b->count) {
        ember_set_error("run-time block %d of %d does not exist", j, b->count);
        return -1;
    }
    if (bytes < 0) bytes = 0;
    if (b->max_bytes > 0 && bytes > b->max_bytes) {
        ember_set_error("%s needs %lld bytes in this run, above the tensor limit of %lld bytes (tensor_bytes)",
                        what, (long long)bytes, (long long)b->max_bytes);
        return EMBER_ERROR_LIMIT;
    }
    if (b->ptr[j] && bytes <= b->room[j]) return 0;
    if ((uint64_t)bytes > (uint64_t)SIZE_MAX - 64) {
        ember_set_error("%s needs %lld bytes in this run, more than this process can address", what,
                        (long long)bytes);
        return EMBER_ERROR_LIMIT;
    }
    size_t n = ((size_t)bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    void* p = NULL;
    if (posix_memalign(&p, 64, n) != 0) {
        ember_set_error("out of memory allocating %s (%lld bytes)", what, (long long)bytes);
        return -1;
    }
    free(b->ptr[j]);
    b->ptr[j] = p;
    b->room[j] = (int64_t)n;
    return 0;
}

/* The blocks of a new model instance (none allocated yet); 0, or -1 when out of memory. */
EMBER_HIDDEN int ember_blocks_init(ember_blocks* b) {
    memset(b, 0, sizeof *b);
    int n = ember_model_num_blocks();
    if (n < 0) return 0;
    b->data = 1;
    b->ptr = calloc((size_t)n + 1, sizeof(void*));
    b->room = calloc((size_t)n + 1, sizeof(int64_t));
    if (!b->ptr || !b->room) {
        free(b->ptr);
        free(b->room);
        memset(b, 0, sizeof *b);
        return -1;
    }
    b->count = n;
    return 0;
}

EMBER_HIDDEN void ember_blocks_free(ember_blocks* b) {
    for (int j = 0; j < b->count; j++) free(b->ptr[j]);
    free(b->ptr);
    free(b->room);
    memset(b, 0, sizeof *b);
}
