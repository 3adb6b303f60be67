/* threadpool.c — the persistent thread pool behind ember_parallel_for.
 *
 * One pool per artifact (each artifact carries its own copy of the runtime).  Workers are created
 * the first time a parallel region needs them and then live until ember_stop_workers() (which
 * the Python runtime calls before it unloads a library nobody uses any more), dlclose() or exit;
 * a region after ember_stop_workers() starts them again.  Between regions a worker spins briefly
 * and then sleeps on a condition variable.
 *
 * A region splits [0, n) into nchunks contiguous chunks (nchunks = min(n, CHUNKS_PER_THREAD *
 * threads): a few per thread, so that when one thread is slowed down (another process takes its
 * core for a while) the others take over its remaining chunks).  Chunks are
 * claimed with a compare-and-swap on one 64-bit word that holds the region's generation, its
 * chunk count and the next unclaimed chunk:
 *
 *     state = generation << 32 | nchunks << 16 | next
 *
 * so a worker that wakes late can never take a chunk of a later region, and the calling thread
 * never waits for a worker that has not woken: whatever nobody has claimed it runs itself.
 * The region ends when all nchunks chunks are done.
 *
 * Host threads: one region at a time owns the pool (a mutex taken with trylock); a second host
 * thread that finds it busy runs its loop inline.  Nested regions (from a chunk) run inline.
 *
 * WebAssembly (WASI without threads): one thread, the caller's; regions run inline.
 *
 * Several artifacts in one process: each has its own pool, so that two models run at once from
 * two host threads would each wake its workers and together ask for more threads than there are
 * cores.  ember_share_workers() hands every pool one counter of worker slots for the whole
 * process (the Python runtime passes the same counter to every artifact it loads, holding the
 * CPUs less one): a region takes up to threads - 1 slots, wakes only that many workers, and
 * gives them back when it ends; with none free it runs inline on its host thread.  Without a
 * shared counter a pool's slots are unlimited.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ember_kernel.h"
#include "ember_runtime.h"

#define MAX_THREADS 256          /* hard limit; the chunk fields of the state word hold 16 bits */
#define DEFAULT_MAX_THREADS 64   /* the default never exceeds this */
#define WORKER_SPIN_NS 100000    /* a worker spins this long after a region before sleeping */
#define WAIT_SPIN_NS 50000       /* the caller spins this long for stragglers before yielding */
#define WORKER_STACK (8u << 20)
#define CHUNKS_PER_THREAD 4      /* dynamic load balancing, see above */

static struct {
    pthread_mutex_t region;      /* held by the host thread whose region owns the pool */
    pthread_mutex_t lock;        /* guards sleeping */
    pthread_cond_t wake;
    _Atomic uint64_t state;
    _Atomic int64_t done;        /* chunks finished in the current region */
    _Atomic int sleepers;
    _Atomic int shutdown;
    _Atomic int nthreads;        /* configured thread count; 0 until first asked */
    /* the current region's job: written by the owner before it publishes the state word */
    ember_range_fn fn;
    void* ctx;
    int64_t n;
    int active;                  /* workers that take part in the current region */
    int nworkers;                /* created workers; changed only by the region owner */
    pthread_t threads[MAX_THREADS];
    uint32_t start_gen[MAX_THREADS];
} P = {
    .region = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

/* Worker slots: this pool's own (unlimited) unless ember_share_workers gave it the process's. */
static int own_slots = MAX_THREADS;
static int* slots = &own_slots;

void ember_share_workers(int* counter) {
    __atomic_store_n(&slots, counter ? counter : &own_slots, __ATOMIC_RELEASE);
}

void ember_add_worker_slots(int* counter, int delta) {
    if (counter) __atomic_fetch_add(counter, delta, __ATOMIC_ACQ_REL);
}

/* Takes up to `want` slots from `counter`; returns how many it got. */
static int take_slots(int* counter, int want) {
    int have = __atomic_load_n(counter, __ATOMIC_RELAXED);
    for (;;) {
        int got = have < want ? have : want;
        if (got <= 0) return 0;
        if (__atomic_compare_exchange_n(counter, &have, have - got, 1, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return got;
    }
}

/* Nonzero on pool workers always, and on a host thread while it runs a region. */
static __thread int tls_in_region;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint32_t gen_of(uint64_t s) { return (uint32_t)(s >> 32); }
static inline uint32_t nchunks_of(uint64_t s) { return (uint32_t)(s >> 16) & 0xffffu; }
static inline uint32_t next_of(uint64_t s) { return (uint32_t)s & 0xffffu; }

static int clamp_threads(long n) {
    if (n < 1) return 1;
    if (n > MAX_THREADS) return MAX_THREADS;
    return (int)n;
}

static int default_threads(void) {
    const char* env = getenv("EMBER_NUM_THREADS");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        if (v > 0) return clamp_threads(v);
    }
    long n = 0;
#if defined(__wasi__) && !defined(_REENTRANT)
    return 1;          /* WebAssembly without threads: every region runs on the calling thread */
#else
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
    if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > DEFAULT_MAX_THREADS) n = DEFAULT_MAX_THREADS;
    return clamp_threads(n);
}

static int current_threads(void) {
    int n = atomic_load_explicit(&P.nthreads, memory_order_relaxed);
    if (n == 0) {
        int expected = 0;
        n = default_threads();
        if (!atomic_compare_exchange_strong(&P.nthreads, &expected, n)) n = expected;
    }
    return n;
}

void ember_set_num_threads(int n) {
    atomic_store(&P.nthreads, n <= 0 ? default_threads() : clamp_threads(n));
}

int ember_get_num_threads(void) { return current_threads(); }

int ember_parallel_threads(void) { return current_threads(); }

/* Claims and runs chunks of region `gen` until none is left. */
static void run_chunks(uint32_t gen) {
    uint64_t s = atomic_load_explicit(&P.state, memory_order_acquire);
    for (;;) {
        if (gen_of(s) != gen) return;
        uint32_t nch = nchunks_of(s), c = next_of(s);
        if (c >= nch) return;
        if (!atomic_compare_exchange_weak_explicit(&P.state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* The chunk is ours and its region cannot end before we finish it: the job is stable. */
        int64_t n = P.n, base = n / nch, rem = n % nch;
        int64_t begin = (int64_t)c * base + (c < rem ? c : rem);
        int64_t end = begin + base + (c < rem ? 1 : 0);
        P.fn(P.ctx, begin, end);
        atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
        s = atomic_load_explicit(&P.state, memory_order_acquire);
    }
}

static void* worker_main(void* arg) {
    uint32_t index = (uint32_t)(uintptr_t)arg;       /* 0-based among workers */
    uint32_t seen = P.start_gen[index];              /* the generation before our first region */
    tls_in_region = 1;
    for (;;) {
        uint64_t s;
        int64_t spin_start = now_ns();
        unsigned spins = 0;
        for (;;) {
            if (atomic_load_explicit(&P.shutdown, memory_order_relaxed)) return NULL;
            s = atomic_load_explicit(&P.state, memory_order_acquire);
            if (gen_of(s) != seen) break;
            cpu_relax();
            if ((++spins & 255u) != 0 || now_ns() - spin_start < WORKER_SPIN_NS) continue;
            pthread_mutex_lock(&P.lock);
            atomic_fetch_add(&P.sleepers, 1);
            while (!atomic_load(&P.shutdown) && gen_of(atomic_load(&P.state)) == seen)
                pthread_cond_wait(&P.wake, &P.lock);
            atomic_fetch_sub(&P.sleepers, 1);
            pthread_mutex_unlock(&P.lock);
            spin_start = now_ns();
        }
        seen = gen_of(s);
        /* Workers beyond what this region uses stay out of it (P.active is written before the
         * state word that announced the region). */
        if ((int)index < P.active) run_chunks(seen);
    }
}

/* Makes sure `want` workers exist; returns how many do.  Called by the region owner. */
static int ensure_workers(int want, uint32_t gen) {
    if (want > MAX_THREADS - 1) want = MAX_THREADS - 1;
    if (P.nworkers >= want) return want;
    pthread_attr_t attr;
    int have_attr = pthread_attr_init(&attr) == 0;
    if (have_attr) {
        size_t size = 0;
        if (pthread_attr_getstacksize(&attr, &size) != 0 || size < WORKER_STACK)
            pthread_attr_setstacksize(&attr, WORKER_STACK);
    }
    while (P.nworkers < want) {
        P.start_gen[P.nworkers] = gen;
        if (pthread_create(&P.threads[P.nworkers], have_attr ? &attr : NULL, worker_main,
                           (void*)(uintptr_t)P.nworkers) != 0)
            break;
        P.nworkers++;
    }
    if (have_attr) pthread_attr_destroy(&attr);
    return P.nworkers < want ? P.nworkers : want;
}

void ember_parallel_for(int64_t n, ember_range_fn fn, void* ctx) {
    if (n <= 0) return;
    int nt = current_threads();
    if (n == 1 || nt <= 1 || tls_in_region) {
        fn(ctx, 0, n);
        return;
    }
    if (pthread_mutex_trylock(&P.region) != 0) {   /* another host thread owns the pool */
        fn(ctx, 0, n);
        return;
    }
    tls_in_region = 1;
    uint32_t gen = gen_of(atomic_load_explicit(&P.state, memory_order_relaxed));
    int* counter = __atomic_load_n(&slots, __ATOMIC_ACQUIRE);
    int taken = take_slots(counter, ensure_workers(nt - 1, gen));
    nt = 1 + taken;
    int64_t nch = n < (int64_t)nt * CHUNKS_PER_THREAD ? n : (int64_t)nt * CHUNKS_PER_THREAD;
    if (nch <= 1 || taken == 0) {          /* no worker to share it with */
        fn(ctx, 0, n);
    } else {
        P.fn = fn;
        P.ctx = ctx;
        P.n = n;
        P.active = (int)(nch - 1 < taken ? nch - 1 : taken);
        atomic_store_explicit(&P.done, 0, memory_order_relaxed);
        gen += 1;
        atomic_store(&P.state, ((uint64_t)gen << 32) | ((uint64_t)nch << 16));  /* publish */
        if (atomic_load(&P.sleepers) > 0) {
            pthread_mutex_lock(&P.lock);
            pthread_cond_broadcast(&P.wake);
            pthread_mutex_unlock(&P.lock);
        }
        run_chunks(gen);
        unsigned spins = 0;
        int64_t spin_start = 0;
        while (atomic_load_explicit(&P.done, memory_order_acquire) < nch) {
            cpu_relax();
            if ((++spins & 1023u) == 0) {
                if (spin_start == 0) spin_start = now_ns();
                else if (now_ns() - spin_start > WAIT_SPIN_NS) sched_yield();
            }
        }
    }
    if (taken > 0) ember_add_worker_slots(counter, taken);     /* give them back */
    tls_in_region = 0;
    pthread_mutex_unlock(&P.region);
}

/* In a child of fork() the workers do not exist and the locks may be held by threads that do
 * not exist either: start over with an empty pool. */
static void pool_after_fork_child(void) {
    pthread_mutex_init(&P.region, NULL);
    pthread_mutex_init(&P.lock, NULL);
    pthread_cond_init(&P.wake, NULL);
    atomic_store(&P.sleepers, 0);
    atomic_store(&P.shutdown, 0);
    P.nworkers = 0;
}

__attribute__((constructor)) static void pool_init(void) {
#if defined(__wasi__)
    (void)pool_after_fork_child;     /* no fork() */
#else
    pthread_atfork(NULL, NULL, pool_after_fork_child);
#endif
}

/* Stops the workers and joins them (the caller owns the pool or runs at unload). */
static void stop_workers(void) {
    if (P.nworkers == 0) return;
    atomic_store(&P.shutdown, 1);
    pthread_mutex_lock(&P.lock);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);
    for (int i = 0; i < P.nworkers; i++) pthread_join(P.threads[i], NULL);
    P.nworkers = 0;
    atomic_store(&P.shutdown, 0);
}

/* Waits for a region that another host thread runs to end, then stops the workers.  From a
 * chunk (a region of this pool in progress on this thread) it does nothing. */
void ember_stop_workers(void) {
    if (tls_in_region) return;
    pthread_mutex_lock(&P.region);
    stop_workers();
    pthread_mutex_unlock(&P.region);
}

/* Runs at dlclose() and at exit: the workers' code is about to be unmapped. */
__attribute__((destructor)) static void pool_fini(void) { stop_workers(); }
