/* run_model.c — run an Ember artifact from C, with no Python.
 *
 *   cc -O2 -I src/ember/runtime/c src/ember/runtime/runners/run_model.c -o run_model -ldl -lm
 *   ./run_model model.so [--threads N] [--iters N] [--out PREFIX] [INPUT.bin ...]
 *
 * Checks that the artifact is whole (its trailer's length and SHA-256), opens it with dlopen()
 * and looks up the functions of ember_runtime.h.  Built with
 * -DEMBER_LINKED and linked with a model's objects instead (the package of `ember export
 * --format c`), it takes no ARTIFACT and calls the linked model's functions.  Inputs are
 * read from raw binary files (one per input, in model order, exactly the input's bytes) or, when
 * none are given, filled with a deterministic pattern; with v = (i * 7919) % 1000 for flat
 * index i:
 *   floats    (float)(v / 1000.0 - 0.5), converted to the dtype (float16/bfloat16: to nearest even)
 *   signed    v % 200 - 100
 *   unsigned  v % 200
 *   bool      v % 2
 * (ember.runtime.pattern_array makes the same arrays in Python.)  Prints the first few values of
 * each output, a checksum of all output bytes (FNV-1a, 64 bits, outputs in order) and the
 * latency; with --out, writes output i's bytes to PREFIX<i>.bin (e.g. to compare a cross build
 * run under an emulator with the reference on the host).  An output whose shape the data decides
 * (a NonZero's count) is the runtime's: the example reads its shape and data after the run
 * (ember_model_output_shape, ember_model_output).
 */
#define _GNU_SOURCE
#ifndef EMBER_LINKED
#include <dlfcn.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ember_runtime.h"

/* The functions of ember_runtime.h, looked up in the artifact. */
typedef struct {
    int (*abi_version)(void);
    int (*cpu_check)(void);
    int (*num_inputs)(void);
    int (*num_outputs)(void);
    const ember_tensor_info* (*input_info)(int);
    const ember_tensor_info* (*output_info)(int);
    ember_model* (*model_create)(void);
    int (*model_run)(ember_model*, void* const*, void* const*);
    void (*model_destroy)(ember_model*);
    const char* (*last_error)(void);
    void (*set_num_threads)(int);
    int (*get_num_threads)(void);
    void (*stop_workers)(void);
    int (*output_shape)(ember_model*, int, int64_t*);
    const void* (*output)(ember_model*, int);
} runtime_api;

static int die(const char* fmt, const char* arg) {
    fprintf(stderr, "run_model: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 1;
}

#ifndef EMBER_LINKED
static void* lookup(void* lib, const char* name, int* ok) {
    void* sym = dlsym(lib, name);
    if (!sym) {
        fprintf(stderr, "run_model: the artifact lacks %s (not an Ember artifact?)\n", name);
        *ok = 0;
    }
    return sym;
}

/* SHA-256 (FIPS 180-4), to check the trailer's digest before the library is opened. */
typedef struct {
    uint32_t h[8];
    uint64_t length;
    unsigned char block[64];
    size_t used;
} sha256_ctx;

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_ctx* c, const unsigned char* p) {
    uint32_t w[64], s[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, c->h, sizeof s);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = s[7] + (ROTR(s[4], 6) ^ ROTR(s[4], 11) ^ ROTR(s[4], 25)) + ((s[4] & s[5]) ^ (~s[4] & s[6])) +
                      SHA256_K[i] + w[i];
        uint32_t t2 = (ROTR(s[0], 2) ^ ROTR(s[0], 13) ^ ROTR(s[0], 22)) + ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
        memmove(s + 1, s, 7 * sizeof(uint32_t));
        s[4] += t1;
        s[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) c->h[i] += s[i];
}

static void sha256_init(sha256_ctx* c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->length = 0;
    c->used = 0;
}

static void sha256_update(sha256_ctx* c, const unsigned char* p, size_t n) {
    c->length += n;
    while (n > 0) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->block + c->used, p, take);
        c->used += take, p += take, n -= take;
        if (c->used == 64) sha256_block(c, c->block), c->used = 0;
    }
}

static void sha256_final(sha256_ctx* c, unsigned char out[32]) {
    uint64_t bits = c->length * 8;
    unsigned char pad[72] = {0x80};
    size_t n = (c->used < 56 ? 56 : 120) - c->used;
    for (int i = 0; i < 8; i++) pad[n + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(c, pad, n + 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(c->h[i] >> (24 - 8 * j));
}

/* The artifact ends with a 48-byte trailer: "EMBERART", the library's length (u64 LE), its
 * sha256.  A length that does not match means the file is truncated, a digest that does not
 * match that it is damaged: refuse it before dlopen. */
static int check_trailer(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return die("cannot open %s", path);
    unsigned char tail[48];
    struct stat st;
    int ok = fstat(fileno(f), &st) == 0 && st.st_size >= 48 && fseek(f, st.st_size - 48, SEEK_SET) == 0 &&
             fread(tail, 1, 48, f) == 48 && memcmp(tail, "EMBERART", 8) == 0;
    uint64_t len = 0;
    if (ok) {
        for (int i = 7; i >= 0; i--) len = (len << 8) | tail[8 + i];
        ok = len == (uint64_t)st.st_size - 48;
    }
    if (!ok) {
        fclose(f);
        return die("%s is not an Ember artifact or is truncated", path);
    }
    sha256_ctx c;
    sha256_init(&c);
    static unsigned char buf[1 << 16];
    uint64_t left = len;
    rewind(f);
    while (left > 0) {
        size_t n = fread(buf, 1, left < sizeof buf ? (size_t)left : sizeof buf, f);
        if (n == 0) break;
        sha256_update(&c, buf, n);
        left -= n;
    }
    fclose(f);
    unsigned char digest[32];
    sha256_final(&c, digest);
    if (left != 0 || memcmp(digest, tail + 16, 32) != 0)
        return die("%s is corrupt: its contents do not match its checksum", path);
    return 0;
}

#endif

/* float32 -> float16 bits, round to nearest even. */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
    if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {                                    /* subnormal half (or zero) */
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13), rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;  /* may carry into the exponent: fine */
    return (uint16_t)(sign | half);
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static int fill_pattern(const ember_tensor_info* t, void* buf) {
    const char* d = t->dtype;
    for (int64_t i = 0; i < t->num_elements; i++) {
        int64_t v = (i * 7919) % 1000;
        float f = (float)((double)v / 1000.0 - 0.5);
        int64_t s = v % 200 - 100, u = v % 200;
        if (!strcmp(d, "float32")) ((float*)buf)[i] = f;
        else if (!strcmp(d, "float64")) ((double*)buf)[i] = (double)f;
        else if (!strcmp(d, "float16")) ((uint16_t*)buf)[i] = f32_to_f16(f);
        else if (!strcmp(d, "bfloat16")) ((uint16_t*)buf)[i] = f32_to_bf16(f);
        else if (!strcmp(d, "int8")) ((int8_t*)buf)[i] = (int8_t)s;
        else if (!strcmp(d, "int16")) ((int16_t*)buf)[i] = (int16_t)s;
        else if (!strcmp(d, "int32")) ((int32_t*)buf)[i] = (int32_t)s;
        else if (!strcmp(d, "int64")) ((int64_t*)buf)[i] = s;
        else if (!strcmp(d, "uint8")) ((uint8_t*)buf)[i] = (uint8_t)u;
        else if (!strcmp(d, "uint16")) ((uint16_t*)buf)[i] = (uint16_t)u;
        else if (!strcmp(d, "uint32")) ((uint32_t*)buf)[i] = (uint32_t)u;
        else if (!strcmp(d, "uint64")) ((uint64_t*)buf)[i] = (uint64_t)u;
        else if (!strcmp(d, "bool")) ((uint8_t*)buf)[i] = (uint8_t)(v % 2);
        else return die("no input pattern for dtype %s", d);
    }
    return 0;
}

static int read_input(const char* path, const ember_tensor_info* t, void* buf) {
    FILE* f = fopen(path, "rb");
    if (!f) return die("cannot open input file %s", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || (int64_t)st.st_size != t->nbytes) {
        fprintf(stderr, "run_model: %s holds %lld bytes; input '%s' takes %lld\n", path,
                (long long)st.st_size, t->name, (long long)t->nbytes);
        fclose(f);
        return 1;
    }
    size_t got = t->nbytes ? fread(buf, 1, (size_t)t->nbytes, f) : 0;
    fclose(f);
    return got == (size_t)t->nbytes ? 0 : die("cannot read %s", path);
}

static double value_at(const ember_tensor_info* t, const void* buf, int64_t i) {
    const char* d = t->dtype;
    if (!strcmp(d, "float32")) return ((const float*)buf)[i];
    if (!strcmp(d, "float64")) return ((const double*)buf)[i];
    if (!strcmp(d, "float16") || !strcmp(d, "bfloat16")) {
        uint16_t h = ((const uint16_t*)buf)[i];
        if (d[0] == 'b') { uint32_t x = (uint32_t)h << 16; float f; memcpy(&f, &x, 4); return f; }
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m | 0x400, e - 25);
        return (h & 0x8000) ? -v : v;
    }
    if (!strcmp(d, "int8")) return ((const int8_t*)buf)[i];
    if (!strcmp(d, "int16")) return ((const int16_t*)buf)[i];
    if (!strcmp(d, "int32")) return ((const int32_t*)buf)[i];
    if (!strcmp(d, "int64")) return (double)((const int64_t*)buf)[i];
    if (!strcmp(d, "uint8") || !strcmp(d, "bool")) return ((const uint8_t*)buf)[i];
    if (!strcmp(d, "uint16")) return ((const uint16_t*)buf)[i];
    if (!strcmp(d, "uint32")) return ((const uint32_t*)buf)[i];
    if (!strcmp(d, "uint64")) return (double)((const uint64_t*)buf)[i];
    return NAN;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static void* alloc_buffer(int64_t nbytes) {
    void* p = NULL;
    size_t n = (size_t)(nbytes > 0 ? (nbytes + 63) / 64 * 64 : 64);
    return posix_memalign(&p, 64, n) == 0 ? p : NULL;
}

/* Writes n bytes to PREFIX<i>.bin. */
static int write_output(const char* prefix, int i, const void* data, int64_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s%d.bin", prefix, i);
    FILE* f = fopen(path, "wb");
    if (!f) return die("cannot write %s", path);
    int ok = fwrite(data, 1, (size_t)n, f) == (size_t)n;
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : die("cannot write %s", path);
}

#ifdef EMBER_LINKED
/* Linked with the model (a package of `ember export --format c`): the functions are the model's. */
#define LOOKUP(field, symbol) (api.field = symbol)
#define ARTIFACT_ARGS 0
#else
#define LOOKUP(field, symbol) (*(void**)&api.field = lookup(lib, #symbol, &ok))
#define ARTIFACT_ARGS 1
#endif

int main(int argc, char** argv) {
    const char* artifact = ARTIFACT_ARGS ? NULL : "the model";
    const char* files[256];
    const char* out_prefix = NULL;
    int nfiles = 0, threads = 0, iters = 10, usage = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_prefix = argv[++i];
        else if (argv[i][0] == '-') usage = 1, i = argc;   /* -h, --help, or unknown */
        else if (!artifact) artifact = argv[i];
        else if (nfiles < 256) files[nfiles++] = argv[i];
    }
    if (!artifact || usage) {
        fprintf(stderr, "usage: run_model %s[--threads N] [--iters N] [--out PREFIX] [INPUT.bin ...]\n",
                ARTIFACT_ARGS ? "ARTIFACT " : "");
        return 2;
    }
    if (iters < 1) iters = 1;
    runtime_api api;
    int ok = 1;
#ifndef EMBER_LINKED
    if (check_trailer(artifact)) return 1;
    void* lib = dlopen(artifact, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return die("%s", dlerror());
#endif
    LOOKUP(abi_version, ember_abi_version);
    LOOKUP(cpu_check, ember_cpu_check);
    LOOKUP(num_inputs, ember_num_inputs);
    LOOKUP(num_outputs, ember_num_outputs);
    LOOKUP(input_info, ember_input_info);
    LOOKUP(output_info, ember_output_info);
    LOOKUP(model_create, ember_model_create);
    LOOKUP(model_run, ember_model_run);
    LOOKUP(model_destroy, ember_model_destroy);
    LOOKUP(last_error, ember_last_error);
    LOOKUP(set_num_threads, ember_set_num_threads);
    LOOKUP(get_num_threads, ember_get_num_threads);
    (void)ok;
    if (!ok) return 1;
    if (api.abi_version() != EMBER_ABI_VERSION) return die("%s was built for another runtime ABI", artifact);
    LOOKUP(stop_workers, ember_stop_workers);
    LOOKUP(output_shape, ember_model_output_shape);
    LOOKUP(output, ember_model_output);
    if (!ok) return 1;
    if (api.cpu_check() != 0) return die("%s", api.last_error());

    int nin = api.num_inputs(), nout = api.num_outputs();
    if (nin < 0 || nout < 0) return die("%s", api.last_error());
    if (nfiles != 0 && nfiles != nin) {
        fprintf(stderr, "run_model: the model takes %d inputs, %d files given\n", nin, nfiles);
        return 1;
    }
    if (threads > 0) api.set_num_threads(threads);

    void** inputs = calloc((size_t)nin + 1, sizeof(void*));
    void** outputs = calloc((size_t)nout + 1, sizeof(void*));
    if (!inputs || !outputs) return die("%s", "out of memory");
    for (int i = 0; i < nin; i++) {
        const ember_tensor_info* t = api.input_info(i);
        if (t->num_elements < 0)
            return die("input '%s' has symbolic dimensions: this example runs models of static shapes "
                       "(see ember_model_run_dynamic in ember_runtime.h)", t->name);
        if (!(inputs[i] = alloc_buffer(t->nbytes))) return die("%s", "out of memory");
        if (nfiles ? read_input(files[i], t, inputs[i]) : fill_pattern(t, inputs[i])) return 1;
    }
    for (int i = 0; i < nout; i++) {
        const ember_tensor_info* t = api.output_info(i);
        if (t->nbytes < 0) continue;    /* its shape is decided by the data: the runtime holds it */
        if (!(outputs[i] = alloc_buffer(t->nbytes))) return die("%s", "out of memory");
    }

    ember_model* model = api.model_create();
    if (!model) return die("%s", api.last_error());
    /* One warm-up run (its outputs are the ones printed), then the timed runs. */
    if (api.model_run(model, inputs, outputs) != 0) return die("%s", api.last_error());
    double* times = malloc(sizeof(double) * (size_t)iters);
    if (!times) return die("%s", "out of memory");
    for (int k = 0; k < iters; k++) {
        double t0 = now_s();
        if (api.model_run(model, inputs, outputs) != 0) return die("%s", api.last_error());
        times[k] = now_s() - t0;
    }
    qsort(times, (size_t)iters, sizeof(double), cmp_double);

    uint64_t hash = 1469598103934665603ull;   /* FNV-1a, 64 bits */
    for (int i = 0; i < nout; i++) {
        const ember_tensor_info* t = api.output_info(i);
        int64_t shape[64];
        const void* data = outputs[i];
        int64_t count = 1;
        if (t->ndim > 64 || api.output_shape(model, i, shape) != 0) return die("%s", api.last_error());
        for (int d = 0; d < t->ndim; d++) count *= shape[d];
        if (t->nbytes < 0 && count > 0 && !(data = api.output(model, i))) return die("%s", api.last_error());
        printf("output %d '%s' %s[", i, t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)shape[d]);
        printf("]:");
        for (int64_t j = 0; j < count && j < 8; j++) printf(" %.6g", value_at(t, data, j));
        printf("%s\n", count > 8 ? " ..." : "");
        const unsigned char* bytes = data;
        int64_t nbytes = count * t->elem_bytes;
        for (int64_t j = 0; j < nbytes; j++) hash = (hash ^ bytes[j]) * 1099511628211ull;
        if (out_prefix && write_output(out_prefix, i, bytes, nbytes)) return 1;
    }
    printf("checksum fnv1a64 %016llx\n", (unsigned long long)hash);
    printf("threads %d, latency median %.4f ms, min %.4f ms over %d runs\n", api.get_num_threads(),
           times[iters / 2] * 1e3, times[0] * 1e3, iters);

    api.model_destroy(model);
    for (int i = 0; i < nin; i++) free(inputs[i]);
    for (int i = 0; i < nout; i++) free(outputs[i]);
    free(inputs);
    free(outputs);
    free(times);
    api.stop_workers();          /* every instance is destroyed: unload without waiting on the pool */
#ifndef EMBER_LINKED
    dlclose(lib);
#endif
    return 0;
}
