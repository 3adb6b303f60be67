// Runs the kernels of Ember's Metal shim (metal_stdlib in this folder) on the CPU: a launch runs
// its threadgroups one after another; a threadgroup's threads are fibers on this one CPU thread
// (started with makecontext, then switched with _setjmp/_longjmp, which save no signal mask:
// build without _FORTIFY_SOURCE, whose longjmp check refuses a jump to another stack), each
// run in turn up to its next threadgroup_barrier, so every thread of the group reaches a
// barrier before any goes past it.  Not reentrant: one launch at a time in a process.  A barrier that some threads of a group reach and
// others do not (they returned) is reported (return value 2).  A kernel without barriers runs
// its threads as plain calls (direct), much faster; a barrier met there is reported (3).
#include <setjmp.h>
#include <ucontext.h>
#include <stdlib.h>
#include <string.h>

namespace {
const size_t STACK = 256 * 1024;
ucontext_t starter;
jmp_buf scheduler;
jmp_buf *current;
char *stacks;
size_t stacks_for;
void (*body)(void *, unsigned, unsigned);
void *body_ctx;
unsigned group_index, thread_index;
bool returned;
bool direct, barrier_met;

void start(void) {
  body(body_ctx, group_index, thread_index);
  returned = true;
  _longjmp(scheduler, 1);
}
}  // namespace

extern "C" void ember_msl_barrier(void) {
  if (direct)
    barrier_met = true;
  else if (!_setjmp(*current))
    _longjmp(scheduler, 1);
}

// Runs body(ctx, g, t) for every group g < groups and thread t < threads; 0 when done, 1 when
// out of memory, 2 when the threads of a group disagree on a barrier, 3 when a kernel run
// without fibers (no_barriers) meets one.
extern "C" int ember_msl_run(void (*fn)(void *, unsigned, unsigned), void *ctx, unsigned groups, unsigned threads,
                             int no_barriers) {
  if (no_barriers) {
    direct = true;
    barrier_met = false;
    for (unsigned g = 0; g < groups && !barrier_met; ++g)
      for (unsigned t = 0; t < threads; ++t) fn(ctx, g, t);
    direct = false;
    return barrier_met ? 3 : 0;
  }
  if (stacks_for < threads) {
    free(stacks);
    stacks = (char *)malloc(STACK * threads);
    stacks_for = stacks ? threads : 0;
    if (!stacks) return 1;
  }
  ucontext_t *fibers = (ucontext_t *)calloc(threads, sizeof(ucontext_t));
  jmp_buf *resume = (jmp_buf *)calloc(threads, sizeof(jmp_buf));
  char *done = (char *)calloc(threads, 1);
  char *started = (char *)calloc(threads, 1);
  if (!fibers || !resume || !done || !started) {
    free(fibers); free(resume); free(done); free(started);
    return 1;
  }
  body = fn;
  body_ctx = ctx;
  int status = 0;
  for (unsigned g = 0; g < groups && !status; ++g) {
    memset(done, 0, threads);
    memset(started, 0, threads);
    for (unsigned t = 0; t < threads; ++t) {
      getcontext(&fibers[t]);
      fibers[t].uc_stack.ss_sp = stacks + STACK * t;
      fibers[t].uc_stack.ss_size = STACK;
      fibers[t].uc_link = 0;                         // start() never returns: it jumps back
      makecontext(&fibers[t], start, 0);
    }
    for (unsigned finished = 0; finished < threads && !status;) {
      unsigned waiting = 0, ended = 0;
      for (unsigned t = 0; t < threads; ++t) {       // each thread up to its next barrier, or its end
        if (done[t]) continue;
        current = &resume[t];
        group_index = g;
        thread_index = t;
        returned = false;
        if (!_setjmp(scheduler)) {
          if (started[t]) _longjmp(resume[t], 1);
          started[t] = 1;
          swapcontext(&starter, &fibers[t]);
        }
        if (returned) {
          done[t] = 1;
          ++ended;
        } else {
          ++waiting;
        }
      }
      finished += ended;
      if (waiting && ended) status = 2;              // threads wait at a barrier the others never reach
    }
  }
  free(fibers);
  free(resume);
  free(done);
  free(started);
  return status;
}
