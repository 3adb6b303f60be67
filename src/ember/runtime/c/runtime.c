/* runtime.c — model instances, errors and the model's input/output description.
 *
 * The generated code defines ember_model_metadata (JSON), ember_model_arena_bytes and
 * ember_model_entry (see ember_kernel.h); this file turns them into the public API of
 * ember_runtime.h.  The "inputs" and "outputs" of the metadata are parsed here once, with a
 * small JSON reader, so C users get names, dtypes and shapes without a JSON library.
 * A symbolic dimension (a string in the metadata) reads as -1; the generated
 * ember_model_shapes binds the symbols of each run.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember_kernel.h"
#include "ember_runtime.h"

/* ---- errors ------------------------------------------------------------------------------ */

static __thread char tls_error[1024];

void ember_set_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error, sizeof tls_error, fmt, ap);
    va_end(ap);
}

const char* ember_last_error(void) { return tls_error; }

/* ---- run-time checks of kernels ---------------------------------------------------------- */

void ember_check_fail(ember_check* c, int site, int64_t value, int64_t extent) {
    int none = 0;
    if (__atomic_compare_exchange_n(&c->failed, &none, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        c->site = site;
        c->value = value;
        c->extent = extent;
    }
}

int ember_check_report(const ember_check* c, const char* const* sites) {
    const char* where = sites[2 * c->site];
    const char* what = sites[2 * c->site + 1];
    if (c->extent == 0)
        ember_set_error("%s: index %lld into %s, which is empty", where, (long long)c->value, what);
    else
        ember_set_error("%s: index %lld is out of range [-%lld, %lld) for %s", where, (long long)c->value,
                        (long long)c->extent, (long long)c->extent, what);
    return EMBER_ERROR_INDEX;
}

/* ---- metadata ---------------------------------------------------------------------------- */

static const struct { const char* name; int bytes; } DTYPES[] = {
    {"float32", 4}, {"float16", 2}, {"bfloat16", 2}, {"float64", 8},
    {"int8", 1},    {"int16", 2},   {"int32", 4},    {"int64", 8},
    {"uint8", 1},   {"uint16", 2},  {"uint32", 4},   {"uint64", 8},
    {"bool", 1},
    {"float8_e4m3fn", 1}, {"float8_e4m3fnuz", 1}, {"float8_e5m2", 1}, {"float8_e5m2fnuz", 1},
    {"float8_e8m0fnu", 1}, {"float4_e2m1fn", 1}, {"int4", 1}, {"uint4", 1}, {"int2", 1}, {"uint2", 1},
};

extern const unsigned char ember_constants[];   /* the model's constants (and inputs' defaults) */

typedef struct {
    ember_tensor_info* items;
    int count;
} tensor_list;

/* The default value of an input (metadata "default": {"offset", "shape"}): it lies in
 * ember_constants at offset, of that shape; used where the caller passes NULL for the input. */
typedef struct {
    int has;
    int64_t offset;
    int ndim;
    int64_t* shape;
} input_default;

static struct {
    pthread_once_t once;
    int ok;
    char error[256];
    tensor_list inputs, outputs;
    input_default* defaults;      /* one per input */
} M = {.once = PTHREAD_ONCE_INIT};

typedef struct {
    const char* p;
    const char* end;
    const char* error;   /* first problem found, NULL while all is well */
} reader;

static int fail(reader* r, const char* what) {
    if (!r->error) r->error = what;
    return 0;
}

static void skip_ws(reader* r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int expect(reader* r, char c) {
    skip_ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return 1;
    }
    return fail(r, "unexpected character");
}

static int peek(reader* r, char c) {
    skip_ws(r);
    return r->p < r->end && *r->p == c;
}

static int hex4(reader* r, unsigned* out) {
    unsigned v = 0;
    if (r->end - r->p < 4) return fail(r, "bad \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = *r->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(r, "bad \\u escape");
    }
    *out = v;
    return 1;
}

static void put_utf8(char** q, unsigned cp) {
    char* o = *q;
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) { *o++ = (char)(0xc0 | (cp >> 6)); *o++ = (char)(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | (cp >> 12)); *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | (cp >> 18)); *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f)); *o++ = (char)(0x80 | (cp & 0x3f));
    }
    *q = o;
}

/* Reads a string; stores a malloc'ed, decoded copy in *out unless out is NULL. */
static int read_string(reader* r, char** out) {
    if (!expect(r, '"')) return 0;
    const char* start = r->p;
    /* decoded text is never longer than the encoded text */
    char* buf = out ? malloc((size_t)(r->end - start) + 1) : NULL;
    if (out && !buf) return fail(r, "out of memory");
    char* q = buf;
    while (r->p < r->end && *r->p != '"') {
        char c = *r->p++;
        if ((unsigned char)c < 0x20) { free(buf); return fail(r, "control character in string"); }
        if (c != '\\') {
            if (q) *q++ = c;
            continue;
        }
        if (r->p >= r->end) break;
        char e = *r->p++;
        unsigned cp = 0;
        switch (e) {
            case '"': case '\\': case '/': cp = (unsigned char)e; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (!hex4(r, &cp)) { free(buf); return 0; }
                if (cp >= 0xd800 && cp < 0xdc00 && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
                    unsigned lo;
                    r->p += 2;
                    if (!hex4(r, &lo)) { free(buf); return 0; }
                    if (lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    else { free(buf); return fail(r, "bad surrogate pair"); }
                }
                break;
            default: free(buf); return fail(r, "bad escape in string");
        }
        if (q) put_utf8(&q, cp);
    }
    if (r->p >= r->end) { free(buf); return fail(r, "unterminated string"); }
    r->p++;
    if (out) { *q = 0; *out = buf; }
    return 1;
}

static int read_int(reader* r, int64_t* out) {
    skip_ws(r);
    const char* s = r->p;
    int neg = 0;
    if (r->p < r->end && *r->p == '-') { neg = 1; r->p++; }
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') { r->p = s; return fail(r, "expected an integer"); }
    int64_t v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (v > (INT64_MAX - 9) / 10) return fail(r, "integer too large");
        v = v * 10 + (*r->p++ - '0');
    }
    if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E')) return fail(r, "expected an integer");
    *out = neg ? -v : v;
    return 1;
}

static int skip_value(reader* r, int depth) {
    if (depth > 64) return fail(r, "nesting too deep");
    skip_ws(r);
    if (r->p >= r->end) return fail(r, "unexpected end");
    char c = *r->p;
    if (c == '"') return read_string(r, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        r->p++;
        if (peek(r, close)) { r->p++; return 1; }
        for (;;) {
            if (c == '{') {
                if (!read_string(r, NULL) || !expect(r, ':')) return 0;
            }
            if (!skip_value(r, depth + 1)) return 0;
            if (peek(r, ',')) { r->p++; continue; }
            return expect(r, close);
        }
    }
    /* number, true, false, null */
    const char* s = r->p;
    while (r->p < r->end && (strchr("+-.eE0123456789", *r->p) || (*r->p >= 'a' && *r->p <= 'z'))) r->p++;
    return r->p > s ? 1 : fail(r, "bad value");
}

/* A JSON list of dimensions into dims (at most 64); a string (a symbolic dimension) is -1
 * where symbolic is allowed. */
static int read_dims(reader* r, int64_t* dims, int* ndim, int symbolic) {
    int nd = 0;
    if (!expect(r, '[')) return 0;
    if (peek(r, ']')) { r->p++; *ndim = 0; return 1; }
    for (;;) {
        if (nd == 64) return fail(r, "too many dimensions");
        if (symbolic && peek(r, '"')) {
            /* a symbolic dimension: known per run only */
            if (!read_string(r, NULL)) return 0;
            dims[nd++] = -1;
        } else {
            if (!read_int(r, &dims[nd])) return 0;
            if (dims[nd] < 0) return fail(r, "negative dimension");
            nd++;
        }
        if (peek(r, ',')) { r->p++; continue; }
        if (!expect(r, ']')) return 0;
        break;
    }
    *ndim = nd;
    return 1;
}

static int read_default(reader* r, input_default* d) {
    int64_t dims[64];
    int have_offset = 0, have_shape = 0;
    if (!expect(r, '{')) return 0;
    for (;;) {
        char* key = NULL;
        if (!read_string(r, &key) || !expect(r, ':')) { free(key); return 0; }
        int ok;
        if (strcmp(key, "offset") == 0) { ok = read_int(r, &d->offset) && (d->offset >= 0 || fail(r, "negative offset")); have_offset = 1; }
        else if (strcmp(key, "shape") == 0) { ok = read_dims(r, dims, &d->ndim, 0); have_shape = 1; }
        else ok = skip_value(r, 1);
        free(key);
        if (!ok) return 0;
        if (peek(r, ',')) { r->p++; continue; }
        if (!expect(r, '}')) return 0;
        break;
    }
    if (!have_offset || !have_shape) return fail(r, "default without offset and shape");
    free(d->shape);
    d->shape = malloc(sizeof(int64_t) * (size_t)(d->ndim ? d->ndim : 1));
    if (!d->shape) return fail(r, "out of memory");
    memcpy(d->shape, dims, sizeof(int64_t) * (size_t)d->ndim);
    d->has = 1;
    return 1;
}

/* One tensor entry; d (inputs only, else NULL) receives its default. */
static int read_tensor(reader* r, ember_tensor_info* t, input_default* d) {
    memset(t, 0, sizeof *t);
    if (d) memset(d, 0, sizeof *d);
    int have_shape = 0;
    if (!expect(r, '{')) return 0;
    if (peek(r, '}')) { r->p++; return fail(r, "tensor entry without name, dtype and shape"); }
    for (;;) {
        char* key = NULL;
        if (!read_string(r, &key) || !expect(r, ':')) { free(key); return 0; }
        if (strcmp(key, "name") == 0) {
            free((char*)t->name); t->name = NULL;
            if (!read_string(r, (char**)&t->name)) { free(key); return 0; }
        } else if (strcmp(key, "dtype") == 0) {
            char* dt = NULL;
            if (!read_string(r, &dt)) { free(key); return 0; }
            t->dtype = NULL;
            for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
                if (strcmp(dt, DTYPES[i].name) == 0) { t->dtype = DTYPES[i].name; t->elem_bytes = DTYPES[i].bytes; }
            free(dt);
            if (!t->dtype) { free(key); return fail(r, "unknown dtype"); }
        } else if (strcmp(key, "shape") == 0) {
            int64_t dims[64];
            int nd = 0;
            if (!read_dims(r, dims, &nd, 1)) { free(key); return 0; }
            int64_t* shape = malloc(sizeof(int64_t) * (size_t)(nd ? nd : 1));
            if (!shape) { free(key); return fail(r, "out of memory"); }
            memcpy(shape, dims, sizeof(int64_t) * (size_t)nd);
            free((int64_t*)t->shape);
            t->shape = shape;
            t->ndim = nd;
            have_shape = 1;
        } else if (d && strcmp(key, "default") == 0) {
            if (!read_default(r, d)) { free(key); return 0; }
        } else if (!skip_value(r, 1)) {
            free(key);
            return 0;
        }
        free(key);
        if (peek(r, ',')) { r->p++; continue; }
        if (!expect(r, '}')) return 0;
        break;
    }
    if (!t->name || !t->dtype || !have_shape) return fail(r, "tensor entry without name, dtype and shape");
    int64_t count = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0) { count = -1; break; }
        if (t->shape[i] != 0 && count > INT64_MAX / 8 / t->shape[i]) return fail(r, "tensor too large");
        count *= t->shape[i];
    }
    t->num_elements = count;
    t->nbytes = count < 0 ? -1 : count * t->elem_bytes;
    if (d && d->has) {
        if (d->ndim != t->ndim) return fail(r, "a default of another rank than its input");
        for (int i = 0; i < t->ndim; i++)
            if (t->shape[i] >= 0 && d->shape[i] != t->shape[i]) return fail(r, "a default of another shape than its input");
    }
    return 1;
}

/* defaults: the inputs' defaults, grown alongside (NULL for the outputs) */
static int read_tensor_list(reader* r, tensor_list* list, input_default** defaults) {
    if (!expect(r, '[')) return 0;
    if (peek(r, ']')) { r->p++; return 1; }
    for (;;) {
        ember_tensor_info* grown = realloc(list->items, sizeof *grown * (size_t)(list->count + 1));
        if (!grown) return fail(r, "out of memory");
        list->items = grown;
        if (defaults) {
            input_default* more = realloc(*defaults, sizeof *more * (size_t)(list->count + 1));
            if (!more) return fail(r, "out of memory");
            *defaults = more;
        }
        if (!read_tensor(r, &list->items[list->count], defaults ? &(*defaults)[list->count] : NULL)) return 0;
        list->count++;
        if (peek(r, ',')) { r->p++; continue; }
        return expect(r, ']');
    }
}

static void parse_metadata(void) {
    reader r = {ember_model_metadata, ember_model_metadata + strlen(ember_model_metadata), NULL};
    int seen_inputs = 0, seen_outputs = 0;
    int64_t constants_bytes = -1;
    if (expect(&r, '{') && !peek(&r, '}')) {
        for (;;) {
            char* key = NULL;
            if (!read_string(&r, &key) || !expect(&r, ':')) { free(key); break; }
            int ok;
            if (strcmp(key, "inputs") == 0) { ok = read_tensor_list(&r, &M.inputs, &M.defaults); seen_inputs = 1; }
            else if (strcmp(key, "outputs") == 0) { ok = read_tensor_list(&r, &M.outputs, NULL); seen_outputs = 1; }
            else if (strcmp(key, "constants_bytes") == 0) ok = read_int(&r, &constants_bytes);
            else ok = skip_value(&r, 1);
            free(key);
            if (!ok) break;
            if (peek(&r, ',')) { r.p++; continue; }
            expect(&r, '}');
            break;
        }
    }
    if (!r.error && (!seen_inputs || !seen_outputs)) r.error = "no \"inputs\" or no \"outputs\"";
    /* every default lies within the constants */
    for (int i = 0; !r.error && M.defaults && i < M.inputs.count; i++) {
        const input_default* d = &M.defaults[i];
        if (!d->has) continue;
        int64_t bytes = M.inputs.items[i].elem_bytes;
        for (int k = 0; k < d->ndim && bytes >= 0; k++)
            bytes = d->shape[k] != 0 && bytes > INT64_MAX / 8 / d->shape[k] ? -1 : bytes * d->shape[k];
        if (bytes < 0 || constants_bytes < 0 || d->offset > constants_bytes - bytes)
            r.error = "an input's default lies outside the constants";
    }
    if (r.error) {
        snprintf(M.error, sizeof M.error, "malformed model metadata at byte %ld: %s",
                 (long)(r.p - ember_model_metadata), r.error);
        M.ok = 0;
    } else {
        M.ok = 1;
    }
}

static int metadata_ok(void) {
    pthread_once(&M.once, parse_metadata);
    if (!M.ok) ember_set_error("%s", M.error);
    return M.ok;
}

int ember_abi_version(void) { return EMBER_ABI_VERSION; }

const char* ember_metadata(void) { return ember_model_metadata; }

unsigned long long ember_arena_bytes(void) { return ember_model_arena_bytes; }

int ember_num_inputs(void) { return metadata_ok() ? M.inputs.count : -1; }

int ember_num_outputs(void) { return metadata_ok() ? M.outputs.count : -1; }

const ember_tensor_info* ember_input_info(int i) {
    if (!metadata_ok()) return NULL;
    if (i < 0 || i >= M.inputs.count) {
        ember_set_error("input index %d out of range (the model has %d inputs)", i, M.inputs.count);
        return NULL;
    }
    return &M.inputs.items[i];
}

static int has_default(int i) { return M.defaults && M.defaults[i].has; }

const void* ember_input_default(int i, const int64_t** shape) {
    if (!metadata_ok()) return NULL;
    if (i < 0 || i >= M.inputs.count) {
        ember_set_error("input index %d out of range (the model has %d inputs)", i, M.inputs.count);
        return NULL;
    }
    if (!has_default(i)) {
        ember_set_error("input %d ('%s') has no default value", i, M.inputs.items[i].name);
        return NULL;
    }
    if (shape) *shape = M.defaults[i].shape;
    return ember_constants + M.defaults[i].offset;
}

const ember_tensor_info* ember_output_info(int i) {
    if (!metadata_ok()) return NULL;
    if (i < 0 || i >= M.outputs.count) {
        ember_set_error("output index %d out of range (the model has %d outputs)", i, M.outputs.count);
        return NULL;
    }
    return &M.outputs.items[i];
}

/* ---- symbols ------------------------------------------------------------------------------ */

/* A model of static shapes defines none of these (weak: a model's own definitions win). */
__attribute__((weak)) int ember_model_symbols(const char* const** names, const int64_t** bounds) {
    *names = NULL;
    *bounds = NULL;
    return 0;
}

__attribute__((weak)) int ember_model_shapes(const int64_t* const* in_shapes, int64_t* syms, int64_t* const* out_shapes) {
    (void)in_shapes;
    (void)syms;
    if (out_shapes)
        for (int i = 0; i < M.outputs.count; i++)
            memcpy(out_shapes[i], M.outputs.items[i].shape, sizeof(int64_t) * (size_t)M.outputs.items[i].ndim);
    return 0;
}

__attribute__((weak)) int ember_model_buffers(const int64_t** offsets, const int64_t** sizes, const int32_t** first,
                                              const int32_t** last) {
    *offsets = *sizes = NULL;
    *first = *last = NULL;
    return 0;
}

__attribute__((weak)) void ember_model_buffer_sizes(const int64_t* syms, int64_t* sizes) {
    (void)syms;
    (void)sizes;
}

__attribute__((weak)) int ember_model_entry_dynamic(unsigned char* arena, void* const* inputs, void* const* outputs,
                                                    const int64_t* syms, const int64_t* offsets) {
    (void)syms;
    (void)offsets;
    return ember_model_entry(arena, inputs, outputs);
}

/* A model that binds no symbols from data (the entry of one that does: ember_model_entry_data). */
__attribute__((weak)) int ember_model_entry_data(unsigned char* arena, void* const* inputs, void* const* outputs,
                                                 int64_t* syms, const int64_t* offsets, ember_blocks* blocks) {
    (void)blocks;
    return ember_model_entry_dynamic(arena, inputs, outputs, syms, offsets);
}

/* A model without data symbols (runtime.c keeps the output shapes of its last run instead). */
__attribute__((weak)) void ember_model_output_dims(const int64_t* syms, int i, int64_t* shape) {
    (void)syms;
    memcpy(shape, M.outputs.items[i].shape, sizeof(int64_t) * (size_t)M.outputs.items[i].ndim);
}

static struct {
    pthread_once_t once;
    int count;
    const char* const* names;
    const int64_t* bounds;
} S = {.once = PTHREAD_ONCE_INIT};

static void read_symbols(void) { S.count = ember_model_symbols(&S.names, &S.bounds); }

static int num_symbols(void) {
    pthread_once(&S.once, read_symbols);
    return S.count;
}

int ember_num_symbols(void) { return num_symbols(); }

const char* ember_symbol_name(int i) {
    if (i < 0 || i >= num_symbols()) {
        ember_set_error("symbol index %d out of range (the model has %d symbols)", i, num_symbols());
        return NULL;
    }
    return S.names[i];
}

int64_t ember_symbol_bound(int i) {
    if (i < 0 || i >= num_symbols()) {
        ember_set_error("symbol index %d out of range (the model has %d symbols)", i, num_symbols());
        return -1;
    }
    return S.bounds[i];
}

/* Binds the symbols from the input shapes into syms (one per symbol) after
 * checking every static dimension; writes the output shapes when out_shapes is not NULL. */
static int bind_shapes(const int64_t* const* input_shapes, int64_t* syms, int64_t* const* out_shapes) {
    if (!metadata_ok()) return -1;
    if (M.inputs.count > 0 && !input_shapes) {
        ember_set_error("the input shapes are NULL but the model has %d inputs", M.inputs.count);
        return -1;
    }
    const int64_t** own = NULL;     /* the shapes with the defaults' where NULL stands for them */
    for (int i = 0; i < M.inputs.count; i++) {
        const ember_tensor_info* t = &M.inputs.items[i];
        if (!input_shapes[i] && has_default(i)) {
            if (!own) {
                own = malloc(sizeof *own * (size_t)M.inputs.count);
                if (!own) {
                    ember_set_error("out of memory binding the input shapes");
                    return -1;
                }
                memcpy(own, input_shapes, sizeof *own * (size_t)M.inputs.count);
            }
            own[i] = M.defaults[i].shape;
            continue;
        }
        if (!input_shapes[i] && t->ndim > 0) {
            ember_set_error("the shape of input %d ('%s') is NULL", i, t->name);
            free(own);
            return -1;
        }
        for (int k = 0; k < t->ndim; k++) {
            int64_t d = input_shapes[i][k];
            if (d < 0 || (t->shape[k] >= 0 && d != t->shape[k])) {
                ember_set_error("input '%s' dimension %d is %lld, expected %lld", t->name, k, (long long)d,
                                (long long)t->shape[k]);
                free(own);
                return -1;
            }
        }
    }
    int rc = ember_model_shapes(own ? (const int64_t* const*)own : input_shapes, syms, out_shapes);
    free(own);
    return rc;
}

int ember_output_shape(const int64_t* const* input_shapes, int i, int64_t* shape) {
    if (!metadata_ok()) return -1;
    if (i < 0 || i >= M.outputs.count || !shape) {
        ember_set_error("ember_output_shape: output index %d out of range or shape is NULL", i);
        return -1;
    }
    int total = 0;
    for (int k = 0; k < M.outputs.count; k++) total += M.outputs.items[k].ndim;
    int64_t* dims = malloc(sizeof(int64_t) * (size_t)(total + 1));
    int64_t** outs = malloc(sizeof(int64_t*) * (size_t)(M.outputs.count + 1));
    int64_t* syms = malloc(sizeof(int64_t) * (size_t)(num_symbols() + 1));
    int rc = -1;
    if (!dims || !outs || !syms) {
        ember_set_error("out of memory");
    } else {
        int at = 0;
        for (int k = 0; k < M.outputs.count; k++) { outs[k] = dims + at; at += M.outputs.items[k].ndim; }
        rc = bind_shapes(input_shapes, syms, outs);
        if (rc == 0) memcpy(shape, outs[i], sizeof(int64_t) * (size_t)M.outputs.items[i].ndim);
    }
    free(dims); free(outs); free(syms);
    return rc;
}

/* ---- model instances ---------------------------------------------------------------------- */

struct ember_model {
    unsigned char* arena;
    size_t arena_bytes;
    int mapped;              /* the arena is an anonymous mapping (large arenas) */
    int64_t* syms;           /* the symbols' values of the current run */
    int nbuf;                /* intermediates placed in the arena by offsets (symbolic models) */
    int64_t* offsets;        /* where each lies */
    int64_t* room;           /* the bytes each may take there */
    int64_t* need;           /* the bytes each takes in the current run */
    ember_blocks blocks;     /* tensors the data sizes (blocks.c) */
    int ran;                 /* a run has completed: its data-sized outputs can be read */
    int64_t** out_shapes;    /* the output shapes of the last run (models without data symbols) */
    _Atomic int busy;
};

EMBER_HIDDEN int ember_blocks_init(ember_blocks* b);
EMBER_HIDDEN void ember_blocks_free(ember_blocks* b);

/* ---- the arena ---------------------------------------------------------------------------- */

/* Arenas at least this large are mapped: zero pages cost nothing until touched, so an arena
 * planned for the largest symbolic shapes holds only what the actual shapes use. */
#define EMBER_MAP_ARENA_BYTES (1u << 20)

/* A zeroed, 64-byte aligned arena of bytes (a multiple of 64); NULL after ember_set_error. */
static unsigned char* arena_alloc(unsigned long long bytes, int* mapped) {
    void* arena = NULL;
    *mapped = 0;
    if (bytes > (unsigned long long)SIZE_MAX) {
        ember_set_error("arena of %llu bytes does not fit in memory", bytes);
        return NULL;
    }
    if (bytes >= EMBER_MAP_ARENA_BYTES) {
        arena = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (arena == MAP_FAILED) arena = NULL;
        *mapped = arena != NULL;
    }
    if (!arena) {
        if (posix_memalign(&arena, 64, (size_t)bytes) != 0) {
            ember_set_error("out of memory allocating the arena (%llu bytes)", bytes);
            return NULL;
        }
        memset(arena, 0, (size_t)bytes);
    }
    return arena;
}

static void arena_free(unsigned char* arena, size_t bytes, int mapped) {
    if (mapped) munmap(arena, bytes);
    else free(arena);
}

/* Places buffers of the given sizes, live from kernel first[k] to last[k], as the compiler's
 * memory plan does (passes/memory.py): largest first, each into the smallest gap between the
 * buffers placed before it that are live at the same time, else above them all.  order and busy
 * are scratch (n and 2n entries).  Returns the arena's size. */
static int64_t place_buffers(int n, const int64_t* size, const int32_t* first, const int32_t* last,
                             int64_t* offset, int* order, int64_t* busy) {
    for (int k = 0; k < n; k++) order[k] = k;
    for (int i = 1; i < n; i++) {           /* by size (descending), first use, index */
        int v = order[i], j = i;
        for (; j > 0; j--) {
            int u = order[j - 1];
            if (size[u] > size[v] || (size[u] == size[v] && (first[u] < first[v] || (first[u] == first[v] && u < v))))
                break;
            order[j] = u;
        }
        order[j] = v;
    }
    int64_t arena = 0;
    for (int i = 0; i < n; i++) {
        int v = order[i];
        if (size[v] == 0) { offset[v] = 0; continue; }
        int nb = 0;                         /* placed buffers live with v, sorted by offset */
        for (int q = 0; q < i; q++) {
            int u = order[q];
            if (size[u] == 0 || first[u] > last[v] || first[v] > last[u]) continue;
            int at = nb++;
            for (; at > 0 && (busy[2 * (at - 1)] > offset[u] ||
                              (busy[2 * (at - 1)] == offset[u] && busy[2 * at - 1] > offset[u] + size[u])); at--) {
                busy[2 * at] = busy[2 * (at - 1)];
                busy[2 * at + 1] = busy[2 * at - 1];
            }
            busy[2 * at] = offset[u];
            busy[2 * at + 1] = offset[u] + size[u];
        }
        int64_t best = -1, best_gap = 0, top = 0;
        for (int b = 0; b < nb; b++) {
            int64_t gap = busy[2 * b] - top;
            if (gap >= size[v] && (best < 0 || gap < best_gap)) { best = top; best_gap = gap; }
            if (busy[2 * b + 1] > top) top = busy[2 * b + 1];
        }
        offset[v] = best >= 0 ? best : top;
        if (offset[v] + size[v] > arena) arena = offset[v] + size[v];
    }
    return arena;
}

/* Makes room in m's arena for this run's buffer sizes: where a buffer needs more than it has,
 * every buffer is placed again with its room grown, and the arena grows to match. */
static int fit_arena(ember_model* m) {
    if (m->nbuf == 0) return 0;
    ember_model_buffer_sizes(m->syms, m->need);
    int grow = 0;
    for (int k = 0; k < m->nbuf; k++)
        if (m->need[k] > m->room[k]) { m->room[k] = m->need[k]; grow = 1; }
    if (!grow) return 0;
    const int64_t *po, *ps;
    const int32_t *first, *last;
    ember_model_buffers(&po, &ps, &first, &last);
    int* order = malloc(sizeof(int) * (size_t)m->nbuf);
    int64_t* busy = malloc(sizeof(int64_t) * 2 * (size_t)m->nbuf);
    if (!order || !busy) {
        free(order);
        free(busy);
        ember_set_error("out of memory planning the arena");
        return -1;
    }
    int64_t bytes = place_buffers(m->nbuf, m->room, first, last, m->offsets, order, busy);
    free(order);
    free(busy);
    bytes = bytes < 64 ? 64 : (bytes + 63) / 64 * 64;
    if ((size_t)bytes > m->arena_bytes) {
        int mapped;
        unsigned char* arena = arena_alloc((unsigned long long)bytes, &mapped);
        if (!arena) return -1;
        arena_free(m->arena, m->arena_bytes, m->mapped);
        m->arena = arena;
        m->arena_bytes = (size_t)bytes;
        m->mapped = mapped;
    }
    return 0;
}

ember_model* ember_model_create(void) {
    if (!metadata_ok()) return NULL;
    unsigned long long bytes = ember_model_arena_bytes;
    bytes = bytes < 64 ? 64 : (bytes + 63) / 64 * 64;
    if (bytes > (unsigned long long)SIZE_MAX) {
        ember_set_error("arena of %llu bytes does not fit in memory", bytes);
        return NULL;
    }
    ember_model* m = calloc(1, sizeof *m);
    if (!m) {
        ember_set_error("out of memory allocating a model instance");
        return NULL;
    }
    const int64_t *po, *ps;
    const int32_t *first, *last;
    m->nbuf = num_symbols() > 0 ? ember_model_buffers(&po, &ps, &first, &last) : 0;
    size_t n = (size_t)m->nbuf + 1;
    m->syms = calloc((size_t)num_symbols() + 1, sizeof(int64_t));
    m->offsets = calloc(n, sizeof(int64_t));
    m->room = calloc(n, sizeof(int64_t));
    m->need = calloc(n, sizeof(int64_t));
    if (!m->syms || !m->offsets || !m->room || !m->need) {
        ember_model_destroy(m);
        ember_set_error("out of memory allocating a model instance");
        return NULL;
    }
    if (m->nbuf) {
        memcpy(m->offsets, po, sizeof(int64_t) * (size_t)m->nbuf);
        memcpy(m->room, ps, sizeof(int64_t) * (size_t)m->nbuf);
    }
    int total = 0;
    for (int k = 0; k < M.outputs.count; k++) total += M.outputs.items[k].ndim;
    m->out_shapes = malloc(sizeof(int64_t*) * (size_t)(M.outputs.count + 1) + sizeof(int64_t) * (size_t)(total + 1));
    if (m->out_shapes) {
        int64_t* dims = (int64_t*)(m->out_shapes + M.outputs.count + 1);
        for (int k = 0; k < M.outputs.count; k++) {
            m->out_shapes[k] = dims;
            memcpy(dims, M.outputs.items[k].shape, sizeof(int64_t) * (size_t)M.outputs.items[k].ndim);
            dims += M.outputs.items[k].ndim;
        }
    }
    if (!m->out_shapes || ember_blocks_init(&m->blocks) != 0) {
        ember_model_destroy(m);
        ember_set_error("out of memory allocating a model instance");
        return NULL;
    }
    m->arena = arena_alloc(bytes, &m->mapped);
    if (!m->arena) {
        ember_model_destroy(m);
        return NULL;
    }
    m->arena_bytes = (size_t)bytes;
    atomic_init(&m->busy, 0);
    return m;
}

static int run(ember_model* m, const int64_t* const* input_shapes, void* const* inputs, void* const* outputs);

int ember_model_run(ember_model* m, void* const* inputs, void* const* outputs) {
    if (num_symbols() > 0 && metadata_ok()) {
        /* symbols the data binds need no input shapes: the static ones stand for them */
        int open = 0;
        for (int i = 0; i < M.inputs.count; i++)
            for (int k = 0; k < M.inputs.items[i].ndim; k++) open |= M.inputs.items[i].shape[k] < 0;
        if (!open) {
            const int64_t** shapes = malloc(sizeof(int64_t*) * (size_t)(M.inputs.count + 1));
            if (!shapes) {
                ember_set_error("out of memory");
                return -1;
            }
            for (int i = 0; i < M.inputs.count; i++) shapes[i] = M.inputs.items[i].shape;
            int rc = run(m, shapes, inputs, outputs);
            free(shapes);
            return rc;
        }
    }
    if (num_symbols() > 0) {
        ember_set_error("ember_model_run: the model has symbolic dimensions; run it with "
                        "ember_model_run_dynamic and the input shapes");
        return -1;
    }
    return run(m, NULL, inputs, outputs);
}

int ember_model_run_dynamic(ember_model* m, const int64_t* const* input_shapes, void* const* inputs,
                            void* const* outputs) {
    if (!input_shapes) {
        ember_set_error("ember_model_run_dynamic: input_shapes is NULL");
        return -1;
    }
    return run(m, input_shapes, inputs, outputs);
}

static int run(ember_model* m, const int64_t* const* input_shapes, void* const* inputs, void* const* outputs) {
    if (!m) {
        ember_set_error("ember_model_run: the model is NULL");
        return -1;
    }
    if (!metadata_ok()) return -1;
    if (M.inputs.count > 0 && !inputs) {
        ember_set_error("ember_model_run: inputs is NULL but the model has %d inputs", M.inputs.count);
        return -1;
    }
    if (M.outputs.count > 0 && !outputs) {
        ember_set_error("ember_model_run: outputs is NULL but the model has %d outputs", M.outputs.count);
        return -1;
    }
    for (int i = 0; i < M.inputs.count; i++)
        if (!inputs[i] && !has_default(i) && M.inputs.items[i].nbytes != 0) {
            ember_set_error("ember_model_run: input %d ('%s') is NULL and has no default", i, M.inputs.items[i].name);
            return -1;
        }
    for (int i = 0; i < M.outputs.count; i++)
        if (!outputs[i] && M.outputs.items[i].nbytes != 0 && ember_model_output_block(i) < 0) {
            ember_set_error("ember_model_run: output %d ('%s') is NULL", i, M.outputs.items[i].name);
            return -1;
        }
    int idle = 0;
    if (!atomic_compare_exchange_strong(&m->busy, &idle, 1)) {
        ember_set_error("ember_model_run: this model instance is already running on another thread; "
                        "create one instance per thread");
        return -1;
    }
    tls_error[0] = 0;
    m->ran = 0;
    /* an input given as NULL that has a default: its default's data, and its default's shape */
    void** own = NULL;
    const int64_t** own_shapes = NULL;
    for (int i = 0; i < M.inputs.count; i++) {
        if (inputs[i] || !has_default(i)) continue;
        if (!own) {
            own = malloc(sizeof *own * (size_t)M.inputs.count);
            own_shapes = input_shapes ? malloc(sizeof *own_shapes * (size_t)M.inputs.count) : NULL;
            if (!own || (input_shapes && !own_shapes)) {
                free(own);
                free(own_shapes);
                atomic_store(&m->busy, 0);
                ember_set_error("out of memory substituting default inputs");
                return -1;
            }
            memcpy(own, inputs, sizeof *own * (size_t)M.inputs.count);
            if (input_shapes) memcpy(own_shapes, input_shapes, sizeof *own_shapes * (size_t)M.inputs.count);
        }
        own[i] = (void*)(ember_constants + M.defaults[i].offset);
        if (own_shapes) own_shapes[i] = M.defaults[i].shape;
    }
    if (own) {
        inputs = own;
        if (own_shapes) input_shapes = (const int64_t* const*)own_shapes;
    }
    int rc;
    if (input_shapes && (bind_shapes(input_shapes, m->syms, m->out_shapes) != 0 || fit_arena(m) != 0))
        rc = -1;                          /* they set the message */
    else
        rc = m->blocks.data ? ember_model_entry_data(m->arena, inputs, outputs, m->syms, m->offsets, &m->blocks)
             : input_shapes ? ember_model_entry_dynamic(m->arena, inputs, outputs, m->syms, m->offsets)
                            : ember_model_entry(m->arena, inputs, outputs);
    free(own);
    free(own_shapes);
    m->ran = rc == 0;
    atomic_store(&m->busy, 0);
    if (rc != 0 && tls_error[0] == 0) ember_set_error("the model failed with status %d", rc);
    return rc;
}

int ember_model_output_shape(ember_model* m, int i, int64_t* shape) {
    if (!m || !shape || !metadata_ok() || i < 0 || i >= M.outputs.count) {
        ember_set_error("ember_model_output_shape: no model or shape, or output index %d out of range", i);
        return -1;
    }
    if (!m->ran) {
        ember_set_error("ember_model_output_shape: the instance has no completed run");
        return -1;
    }
    if (m->blocks.data) ember_model_output_dims(m->syms, i, shape);
    else memcpy(shape, m->out_shapes[i], sizeof(int64_t) * (size_t)M.outputs.items[i].ndim);
    return 0;
}

const void* ember_model_output(ember_model* m, int i) {
    if (!m || !metadata_ok() || i < 0 || i >= M.outputs.count) {
        ember_set_error("ember_model_output: no model, or output index %d out of range", i);
        return NULL;
    }
    int j = ember_model_output_block(i);
    if (j < 0) {
        ember_set_error("ember_model_output: output %d ('%s') is written to the caller's buffer", i,
                        M.outputs.items[i].name);
        return NULL;
    }
    if (!m->ran) {
        ember_set_error("ember_model_output: the instance has no completed run");
        return NULL;
    }
    return m->blocks.ptr[j];
}

void ember_model_set_tensor_limit(ember_model* m, int64_t bytes) {
    if (m) m->blocks.max_bytes = bytes > 0 ? bytes : 0;
}

void ember_model_destroy(ember_model* m) {
    if (!m) return;
    ember_blocks_free(&m->blocks);
    free(m->out_shapes);
    if (m->arena) arena_free(m->arena, m->arena_bytes, m->mapped);
    free(m->syms);
    free(m->offsets);
    free(m->room);
    free(m->need);
    free(m);
}

/* ---- the processor ------------------------------------------------------------------------ */

/* The artifact is compiled for a processor (-march=native by default); started on one that
 * lacks an extension it was compiled with, the first kernel would die of an illegal
 * instruction.  ember_cpu_features.h, generated by the toolchain from the compiler's predefined
 * macros for this build's flags (ember/toolchain/cpu_features.py), lists every extension the
 * code may use beyond the baseline; this check, compiled for the baseline so that it runs
 * anywhere, tests each and names the missing ones. */
#include "ember_cpu_features.h"

#define MISSING(name)                                                                         \
    do {                                                                                      \
        n += snprintf(missing + n, sizeof missing - (size_t)n, "%s%s", n ? ", " : "", name); \
        if (n >= (int)sizeof missing) n = (int)sizeof missing - 1;                           \
    } while (0)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EMBER_BASELINE __attribute__((target("arch=x86-64")))
#else
#define EMBER_BASELINE
#endif

/* Linux processors whose extensions the check reads from AT_HWCAP (ember_cpu_features.h) */
#if (defined(__aarch64__) || defined(__arm__) || defined(__riscv)) && defined(__linux__)
#define EMBER_HWCAP_CHECK 1
#endif

#if defined(__x86_64__) || defined(EMBER_HWCAP_CHECK)
/* The check's verdict: missing extensions first, then ones nothing could test. */
EMBER_BASELINE static int cpu_verdict(const char* missing, const char* unknown) {
    if (missing[0]) {
        ember_set_error("this artifact was compiled for a processor with %s, which this one lacks", missing);
        return -1;
    }
    if (unknown[0]) {
        ember_set_error("this artifact was compiled for a processor with %s, which Ember cannot detect; "
                        "compile it with flags that leave them out", unknown);
        return -1;
    }
    return 0;
}
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

EMBER_BASELINE static unsigned long long xcr0(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;   /* no OSXSAVE: no XGETBV */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* Whether CPUID leaf.subleaf has the bit in register reg (0 eax .. 3 edx) and the OS enables
 * the register state (XCR0 bits) the extension needs. */
__attribute__((unused)) EMBER_BASELINE static int cpuid_has(unsigned leaf, unsigned subleaf, int reg, int bit, unsigned long long state) {
    unsigned r[4];
    if (!__get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3])) return 0;
    if (!(r[reg] & (1u << bit))) return 0;
    return (xcr0() & state) == state;
}

EMBER_BASELINE int ember_cpu_check(void) {
    char missing[512];   /* no initializer: it could become wide vector stores */
    int n = 0;
    missing[0] = 0;
    __builtin_cpu_init();
#define BUILTIN(name) if (!__builtin_cpu_supports(name)) MISSING(name);
#define CPUID(name, leaf, subleaf, reg, bit, state) if (!cpuid_has(leaf, subleaf, reg, bit, state)) MISSING(name);
    EMBER_CPU_BUILTIN(BUILTIN)
    EMBER_CPU_CPUID(CPUID)
#undef BUILTIN
#undef CPUID
    (void)n;
    return cpu_verdict(missing, EMBER_CPU_UNKNOWN);
}
#elif defined(EMBER_HWCAP_CHECK)
#include <sys/auxv.h>

int ember_cpu_check(void) {
    char missing[512];
    int n = 0;
    missing[0] = 0;
#define HWCAP(name, word, bit) if (!(getauxval(word) & (1ull << (bit)))) MISSING(name);
    EMBER_CPU_HWCAP(HWCAP)
#undef HWCAP
    (void)n;
    return cpu_verdict(missing, EMBER_CPU_UNKNOWN);
}
#else
/* Other architectures: no check (the artifact must run on the kind of processor it was built for;
 * a WebAssembly engine refuses a module with instructions it lacks when it compiles it). */
int ember_cpu_check(void) { return 0; }
#endif

/* The constants blob when the toolchain was given none (a real blob's definition wins).  A static
 * library must not hold it (the linker would take it and never pull the real one from the
 * archive): the packages of `ember export --format c` build with EMBER_NO_DEFAULT_CONSTANTS. */
#ifndef EMBER_NO_DEFAULT_CONSTANTS
__attribute__((weak, aligned(64))) const unsigned char ember_constants[64];
#endif
