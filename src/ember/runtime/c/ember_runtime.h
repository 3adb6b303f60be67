/* ember_runtime.h — the public C interface of an Ember artifact.
 *
 * An artifact is one shared library holding a compiled model, its constants and this runtime.
 * Use it by linking against it or, more usually, with dlopen() + dlsym() on the names below
 * (every artifact exports the same names, so open each with RTLD_LOCAL and look the functions up
 * through its handle).  Nothing else is exported.  Note that dlopen() of a path that is already
 * loaded returns the library loaded before, even if another artifact has been saved there since:
 * a program that loads artifacts which may change should open a private copy (the Python
 * runtime opens a memfd copy per content).  Before dlclose(), destroy every instance and call
 * ember_stop_workers().
 *
 *   ember_model* m = ember_model_create();
 *   void* in[]  = { input0 };           buffers are dense, row-major, of the dtype and shape
 *   void* out[] = { output0 };          given by ember_input_info(i) / ember_output_info(i)
 *   if (ember_model_run(m, in, out) != 0) fprintf(stderr, "%s\n", ember_last_error());
 *   ember_model_destroy(m);
 *
 * Instances are independent: run different instances from different threads at once if you
 * like (they share the library's thread pool); one instance runs one call at a time.
 *
 * A model with symbolic dimensions (ember_num_symbols() > 0; the shapes of ember_input_info
 * hold -1 there) runs any input shapes whose symbols stay within their bounds:
 *
 *   const int64_t* shapes[] = { ids_shape, mask_shape };     one array of ndim dims per input
 *   int64_t out_shape[3];
 *   ember_output_shape(shapes, 0, out_shape);                 size the outputs
 *   ember_model_run_dynamic(m, shapes, in, out);
 */
#ifndef EMBER_RUNTIME_H
#define EMBER_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_API __attribute__((visibility("default")))

/* Bumped when anything in this header changes incompatibly. */
#define EMBER_ABI_VERSION 5

typedef struct ember_model ember_model;

/* One input or output of the model. */
typedef struct ember_tensor_info {
    const char* name;
    const char* dtype;        /* numpy name: "float32", "int64", "bool", ... */
    int ndim;
    const int64_t* shape;     /* ndim entries; -1 for a symbolic dimension */
    int64_t num_elements;     /* -1 when the shape has a symbolic dimension */
    int64_t nbytes;           /* -1 likewise */
    int elem_bytes;
} ember_tensor_info;

EMBER_API int ember_abi_version(void);                  /* EMBER_ABI_VERSION of the artifact */
/* 0 if this processor has every instruction-set extension the artifact's code may use (every
 * one its compile flags enabled: with -march=native, all of the compiling processor's); else -1,
 * and ember_last_error() names the missing ones.  Call it before anything else: code compiled for
 * an extension the processor lacks dies of an illegal instruction.  x86 and aarch64 (Linux) are
 * checked; on other architectures it returns 0. */
EMBER_API int ember_cpu_check(void);
EMBER_API const char* ember_metadata(void);             /* the model's JSON description */
EMBER_API unsigned long long ember_arena_bytes(void);   /* scratch memory one instance holds */

EMBER_API int ember_num_inputs(void);                   /* -1 if the metadata is malformed */
EMBER_API int ember_num_outputs(void);
EMBER_API const ember_tensor_info* ember_input_info(int i);   /* NULL if i is out of range */
EMBER_API const ember_tensor_info* ember_output_info(int i);
/* Inputs with a default value (ONNX initializers that are also graph inputs; metadata "default"):
 * pass NULL for such an input to ember_model_run or ember_model_run_dynamic (its data and its
 * shape; to ember_output_shape its shape) and the artifact's embedded default is used.  This
 * returns the default's data and sets *shape (ember_input_info(i)->ndim entries) when shape is
 * not NULL; NULL if input i has no default. */
EMBER_API const void* ember_input_default(int i, const int64_t** shape);

/* What ember_model_run and ember_model_run_dynamic return; on any failure ember_last_error()
 * says what went wrong, and the outputs hold nothing meaningful. */
#define EMBER_OK 0
#define EMBER_ERROR (-1)          /* a bad call: a NULL argument, input shapes that do not fit, ... */
#define EMBER_ERROR_INDEX (-2)    /* an index read from the inputs is out of range (a Gather's
                                     indices, say): the message names the node, the op, the
                                     index and the valid range; the kernels after it did not run */
#define EMBER_ERROR_SHAPE (-3)    /* a dimension the data decides during the run (a NonZero count, a
                                     Reshape's shape read from an input) is negative, above its
                                     limit or of the wrong element count: the message names the node */
#define EMBER_ERROR_LIMIT (-4)    /* a tensor the data sizes needs more than the instance's tensor
                                     limit (ember_model_set_tensor_limit) */

EMBER_API ember_model* ember_model_create(void);        /* NULL on failure (see ember_last_error) */
EMBER_API int ember_model_run(ember_model* model, void* const* inputs, void* const* outputs);
EMBER_API void ember_model_destroy(ember_model* model); /* NULL is allowed */

/* Symbolic dimensions: their number, names and largest values (0 symbols: a static model). */
EMBER_API int ember_num_symbols(void);
EMBER_API const char* ember_symbol_name(int i);          /* NULL if i is out of range */
EMBER_API int64_t ember_symbol_bound(int i);             /* -1 if i is out of range */
/* The shape of output i (ember_output_info(i)->ndim entries) for inputs of the given shapes;
 * 0, or -1 when the shapes do not fit the model (see ember_last_error). */
EMBER_API int ember_output_shape(const int64_t* const* input_shapes, int i, int64_t* shape);
/* ember_model_run for inputs of the given shapes (needed when the model has symbols); the
 * outputs must have the shapes ember_output_shape gives. */
EMBER_API int ember_model_run_dynamic(ember_model* model, const int64_t* const* input_shapes,
                                      void* const* inputs, void* const* outputs);

/* Outputs whose shape the data decides (their dims in ember_output_info hold -1, and
 * ember_output_shape gives -1 there): the runtime owns them.  Pass NULL (or anything) for them in
 * outputs; after a run that returned 0, ember_model_output_shape gives the shape of any output
 * for that run and ember_model_output the data of a runtime-owned one, valid until the next run
 * or ember_model_destroy (NULL for an output written to the caller's buffer).  A model whose
 * only symbols are data-decided runs with ember_model_run too. */
EMBER_API int ember_model_output_shape(ember_model* model, int i, int64_t* shape);
EMBER_API const void* ember_model_output(ember_model* model, int i);
/* The most bytes one tensor sized by the data may take in a run of this instance (0: no limit). */
EMBER_API void ember_model_set_tensor_limit(ember_model* model, int64_t bytes);

/* The message of the last failure on the calling thread ("" if none). */
EMBER_API const char* ember_last_error(void);

/* Threads of the library's pool (the calling thread included).  n <= 0 restores the default:
 * $EMBER_NUM_THREADS if set, else the CPUs this process may run on (at most 64). */
EMBER_API void ember_set_num_threads(int n);
EMBER_API int ember_get_num_threads(void);

/* One process, several models: give every loaded artifact the same counter of worker slots
 * (e.g. the CPUs less one) and their pools together never run more workers than it holds; a
 * region takes up to threads - 1 slots and returns them when it ends.  NULL: the pool's own,
 * unlimited slots (the default).  ember_add_worker_slots changes a shared counter atomically. */
EMBER_API void ember_share_workers(int* counter);
EMBER_API void ember_add_worker_slots(int* counter, int delta);

/* Stops the library's worker threads and waits for them to exit (a region running on another
 * host thread ends first); a later run starts them again.  Call it before dlclose() of a library
 * whose instances are all destroyed, so that unloading never waits on the pool's threads
 * (dlclose() and exit stop them too, as a last resort).  Called from inside a parallel region of
 * the same library it does nothing. */
EMBER_API void ember_stop_workers(void);

#ifdef __cplusplus
}
#endif

#endif /* EMBER_RUNTIME_H */
