/* bias.c -- biased channel locks: worker ids, granting a bias, revoking it.
 *
 * The protocol is described at "Biased locks" in chan.h.  Here: each worker thread
 * claims a small id (1..62) for as long as it runs, so that a channel can name the one
 * thread it is biased to in a byte; an id is handed to a later worker only after its
 * previous holder has stopped (the claim and the release order the two threads'
 * channel operations).  Workers beyond 62 at once, or a kernel without membarrier's
 * private expedited command, simply never bias a channel.
 */
#include "chan.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/membarrier.h>

TP__TLS uint8_t tp__bias_id;

static atomic_uint_fast64_t ids_used; /* bit i: id i is some worker's */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool usable;                   /* membarrier registered: revoking is possible */

/* Statistics for the tests: channels biased and biases revoked, process-wide. */
atomic_ulong tp__bias_granted, tp__bias_revoked;

static long membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

/* The expedited command must be registered once before use (Linux 4.14). */
static void init(void)
{
    usable = TP__CHAN_BIAS && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

bool tp__bias_enabled(void)
{
    pthread_once(&once, init);
    return usable;
}

void tp__bias_worker_start(void)
{
    if (!tp__bias_enabled())
        return;
    uint64_t used = atomic_load_explicit(&ids_used, memory_order_acquire);
    for (;;) {
        uint64_t free_ids = ~used & ((uint64_t)-1 >> 1) & ~(uint64_t)1; /* 1..62 */
        if (!free_ids)
            return;
        unsigned id = (unsigned)__builtin_ctzll(free_ids);
        if (atomic_compare_exchange_weak_explicit(&ids_used, &used, used | (uint64_t)1 << id,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            tp__bias_id = (uint8_t)id;
            return;
        }
    }
}

void tp__bias_worker_stop(void)
{
    if (tp__bias_id)
        atomic_fetch_and_explicit(&ids_used, ~((uint64_t)1 << tp__bias_id),
                                  memory_order_release);
    tp__bias_id = 0;
}

/* Out of line: once per channel.  Under `lock`, the streak's count in `busy`. */
void tp__chan_bias_grant(tp_chan *ch, unsigned id)
{
    atomic_store_explicit(&ch->busy.v, 0, memory_order_relaxed);
    atomic_store_explicit(&ch->bias, (uint8_t)(TP__BIAS_ON | id), memory_order_relaxed);
    atomic_fetch_add_explicit(&tp__bias_granted, 1, memory_order_relaxed);
}

/* Under `lock`, by a thread that is not the owner: end the bias for good. */
void tp__chan_bias_revoke(tp_chan *ch)
{
    unsigned st = atomic_load_explicit(&ch->bias, memory_order_relaxed);
    atomic_store_explicit(&ch->bias, (uint8_t)(st | TP__BIAS_REVOKED), memory_order_relaxed);
    /* Registered before the owner took its id (again here in case the process forked
       since: a child's registration is not guaranteed).  Without the barrier the owner
       could be inside unseen, so there is no going on. */
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
        (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0 ||
         membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0))
        tp__panic(__FILE__, __LINE__, "membarrier failed while revoking a channel's bias");
    for (unsigned i = 0; atomic_load_explicit(&ch->busy.v, memory_order_acquire); i++)
        tp__backoff(i); /* the owner may have been preempted inside */
    atomic_fetch_add_explicit(&tp__bias_revoked, 1, memory_order_relaxed);
}
