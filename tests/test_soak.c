/* test_soak.c -- load: thousands of tasks on every worker plus plain threads exchange
 * checksummed messages over a random mix of buffered and unbuffered channels, with
 * closes, deadlines, select, mutexes, conditions, wait groups, joins and detaches; at the
 * end nothing was lost or duplicated and nothing leaked.
 *
 * One round (a fresh pool: one worker per CPU, or 3):
 *   - NCHAN channels with random capacity (0 = rendezvous) and element size (16: inline
 *     buffer; 24, 64: the heap path for parked tasks);
 *   - producers (tasks, spawned by spawner tasks and by the main thread, plus plain
 *     threads) send messages with deadlines -1, 0 or a few ms ahead, with tp_chan_send
 *     or with tp_select offering the message to up to three channels; a send counts as
 *     sent, on the channel that took it, only when it returned 0 (EPIPE and ETIMEDOUT
 *     are "not sent");
 *   - consumers (tasks and plain threads) receive with bounded deadlines (tp_chan_recv,
 *     or tp_select over up to three channels) until every channel has said EPIPE;
 *     relays receive from one channel and forward to another;
 *   - a closer task closes a few channels early; once every producer has reported
 *     (a token on the `done` channel), the main thread closes all of them;
 *   - spawners join their producers (deadline -1, polling with deadline 0, short
 *     deadlines retried, or a short deadline then detach) or detach them at once;
 *   - everybody now and then enters a mutex-protected read-modify-write (sometimes
 *     yielding inside it) and hands a ticket to the taker tasks, which wait on a
 *     condition (deadline -1 or short); consumer tasks count down a wait group that the
 *     closer waits on with short deadlines and the main thread with -1.
 * Then, per channel, the count and the checksum of what was sent equal those of what
 * was received; every message arrived intact; the mutex-protected counter equals the
 * number of critical sections; every ticket was taken exactly once; every task spawned
 * finished and was joined or detached exactly once; the pool reports no live, parked or
 * saved tasks and no saved capacity.
 *
 * The operations come from small tables (send_ops, recv_ops, side_ops): a new
 * primitive is one more row.
 *
 * Duration: SOAK_SECONDS (default 3; `make soak` runs 60).  Rounds repeat until the time
 * is spent; every round is checked in full.  SOAK_SEED fixes the seed (the choices each
 * task makes; the interleaving is the machine's).
 */
#include "tp_test.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NCHAN 16
#define NSPAWNERS 8
#define PROD_PER_SPAWNER 250
#define PROD_BY_MAIN 100
#define NPROD (NSPAWNERS * PROD_PER_SPAWNER + PROD_BY_MAIN)
#define NCONS 48
#define NRELAY 16
#define NTHREAD_PROD 2
#define NTHREAD_CONS 2
#define NTAKERS 4
#define MSGS_PER_PROD 10
#define MAXESZ 64

/* --------------------------------------------------------------- messages ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* id, check = mix(id), then payload bytes derived from id. */
struct msg {
    uint64_t id;
    uint64_t check;
    unsigned char payload[MAXESZ - 16];
};

static void msg_make(struct msg *m, uint64_t id, size_t esz)
{
    m->id = id;
    m->check = mix(id);
    for (size_t i = 0; i + 16 < esz; i++)
        m->payload[i] = (unsigned char)(mix(id + i + 1) >> 13);
}

static bool msg_ok(const struct msg *m, size_t esz)
{
    if (m->check != mix(m->id))
        return false;
    for (size_t i = 0; i + 16 < esz; i++)
        if (m->payload[i] != (unsigned char)(mix(m->id + i + 1) >> 13))
            return false;
    return true;
}

/* ------------------------------------------------------------------ state ---- */

struct chan_slot {
    tp_chan *ch;
    size_t esz, cap;
    /* accounting: a send counts when it returned 0, a receive when it returned 0 */
    _Atomic uint64_t sent_n, sent_sum, recv_n, recv_sum;
};

/* Per-kind counters for the report. */
enum {
    C_SEND_OK, C_SEND_EPIPE, C_SEND_TIMEDOUT, C_RECV_OK, C_RECV_EPIPE, C_RECV_TIMEDOUT,
    C_SELECT_SEND, C_SELECT_RECV, C_JOIN_WAIT, C_JOIN_POLL, C_JOIN_RETRY, C_JOIN_TIMEDOUT,
    C_DETACH, C_DETACH_LATE, C_SPAWNED, C_FINISHED, C_CLOSES_EARLY, C_RELAYED, C_CORRUPT,
    C_UNEXPECTED, C_YIELD, C_SLEEP, C_DEEP, C_EXIT, C_MUTEX, C_TICKETS, C_COND_WAIT,
    C_COND_TIMEDOUT, C_WG_WAIT, C_NCOUNT
};
static const char *const cnames[C_NCOUNT] = {
    "send ok", "send EPIPE", "send ETIMEDOUT", "recv ok", "recv EPIPE", "recv ETIMEDOUT",
    "select sends", "select receives", "join -1", "join polled", "join retried",
    "join timed out", "detach", "detach after timeout", "spawned", "finished", "early closes",
    "relayed", "corrupt messages", "unexpected errors", "yields", "sleeps", "deep calls",
    "tp_exit", "mutex sections", "cond tickets", "cond waits", "cond timeouts", "wg waits"};

struct round {
    unsigned index;
    uint64_t seed;
    tp_pool *pool;
    struct chan_slot chans[NCHAN];
    tp_chan *done;                 /* one token per producer when it has finished sending */
    atomic_bool closing;           /* the final close has begun */
    /* mutex + condition: tickets handed from everybody to the ticket takers */
    tp_mutex mu;
    tp_cond cv;
    uint64_t guarded;              /* incremented under mu, non-atomically, by many */
    uint64_t tickets, taken;       /* under mu */
    bool no_more_tickets;          /* under mu */
    tp_wg consumers_left;          /* every consumer task is one count */
    _Atomic uint64_t c[C_NCOUNT];
    char first_error[256];
    atomic_flag error_taken;
};

static void count(struct round *r, int k, uint64_t n) { atomic_fetch_add(&r->c[k], n); }

static void unexpected(struct round *r, const char *what, int err)
{
    count(r, C_UNEXPECTED, 1);
    if (!atomic_flag_test_and_set(&r->error_taken))
        snprintf(r->first_error, sizeof r->first_error, "%s: errno %d (%s)", what, err,
                 strerror(err));
}

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    return mix(*s);
}

/* A deadline: -1 (only when allowed), 0, or 1-3 ms ahead. */
static int64_t pick_deadline(uint64_t *rng, bool forever_ok)
{
    unsigned k = (unsigned)(rnd(rng) % 10);
    if (forever_ok && k < 5)
        return -1;
    if (k < 7)
        return 0;
    return tp_now() + 1 + (int64_t)(k % 3);
}

/* ------------------------------------------------------ operation tables ---- */

#define MAXCANDS 3

/* A send primitive: offer message `id` to one of the n candidate channels (encoded for
   each one's element size); *chosen = the candidate whose operation completed (also
   for EPIPE).  0, or -1 with errno.  A new primitive is one more row. */
typedef int send_fn(struct chan_slot **cands, unsigned n, uint64_t id, int64_t dl,
                    unsigned *chosen);
/* A receive primitive: take a message from one of the candidates into m[*chosen]. */
typedef int recv_fn(struct chan_slot **cands, unsigned n, struct msg *m, int64_t dl,
                    unsigned *chosen);

static int op_chan_send(struct chan_slot **cands, unsigned n, uint64_t id, int64_t dl,
                        unsigned *chosen)
{
    struct msg m;
    (void)n;
    msg_make(&m, id, cands[0]->esz);
    *chosen = 0;
    return tp_chan_send(cands[0]->ch, &m, dl);
}

static int op_chan_recv(struct chan_slot **cands, unsigned n, struct msg *m, int64_t dl,
                        unsigned *chosen)
{
    (void)n;
    *chosen = 0;
    return tp_chan_recv(cands[0]->ch, &m[0], dl);
}

/* tp_select over the candidates; a case that completed with EPIPE is reported as a
   failed operation with errno EPIPE on that channel. */
static int select_cases(tp_case *cases, unsigned n, int64_t dl, unsigned *chosen)
{
    int i = tp_select(cases, n, dl);
    if (i < 0)
        return -1;
    *chosen = (unsigned)i;
    if (cases[i].err) {
        errno = cases[i].err;
        return -1;
    }
    return 0;
}

static int op_select_send(struct chan_slot **cands, unsigned n, uint64_t id, int64_t dl,
                          unsigned *chosen)
{
    struct msg m[MAXCANDS];
    tp_case cases[MAXCANDS];
    for (unsigned i = 0; i < n; i++) {
        msg_make(&m[i], id, cands[i]->esz);
        cases[i] = (tp_case){.ch = cands[i]->ch, .op = TP_SEND, .elem = &m[i]};
    }
    *chosen = 0;
    return select_cases(cases, n, dl, chosen);
}

static int op_select_recv(struct chan_slot **cands, unsigned n, struct msg *m, int64_t dl,
                          unsigned *chosen)
{
    tp_case cases[MAXCANDS];
    for (unsigned i = 0; i < n; i++)
        cases[i] = (tp_case){.ch = cands[i]->ch, .op = TP_RECV, .elem = &m[i]};
    *chosen = 0;
    return select_cases(cases, n, dl, chosen);
}

static const struct {
    send_fn *fn;
    unsigned maxcands; /* how many channels it can offer a message to */
    int counter;       /* counted here too (-1: nowhere else) */
} send_ops[] = {
    {op_chan_send, 1, -1},
    {op_chan_send, 1, -1},
    {op_select_send, MAXCANDS, C_SELECT_SEND},
};

static const struct {
    recv_fn *fn;
    unsigned maxcands;
    int counter;
} recv_ops[] = {
    {op_chan_recv, 1, -1},
    {op_chan_recv, 1, -1},
    {op_select_recv, MAXCANDS, C_SELECT_RECV},
};
#define NSEND_OPS (sizeof send_ops / sizeof send_ops[0])
#define NRECV_OPS (sizeof recv_ops / sizeof recv_ops[0])

/* Something a task or thread does between messages. */
typedef void side_fn(struct round *r, uint64_t *rng);

static void side_yield(struct round *r, uint64_t *rng)
{
    (void)rng;
    if (tp_yield() != 0)
        unexpected(r, "tp_yield", errno);
    count(r, C_YIELD, 1);
}

static void side_sleep(struct round *r, uint64_t *rng)
{
    if (tp_sleep(tp_now() + (int64_t)(rnd(rng) % 2)) != 0)
        unexpected(r, "tp_sleep", errno);
    count(r, C_SLEEP, 1);
}

/* A critical section that is only correct under mutual exclusion (read, maybe yield
   or park while holding the mutex, write back), then sometimes a ticket for the
   condition's takers. */
static void side_mutex(struct round *r, uint64_t *rng)
{
    if (tp_mutex_lock(&r->mu) != 0) {
        unexpected(r, "tp_mutex_lock", errno);
        return;
    }
    uint64_t g = r->guarded;
    if (rnd(rng) % 4 == 0)
        tp_yield();
    r->guarded = g + 1;
    count(r, C_MUTEX, 1);
    if (rnd(rng) % 2 == 0) {
        r->tickets++;
        count(r, C_TICKETS, 1);
        if (tp_cond_signal(&r->cv) != 0)
            unexpected(r, "tp_cond_signal", errno);
    }
    if (tp_mutex_unlock(&r->mu) != 0)
        unexpected(r, "tp_mutex_unlock", errno);
}

static void side_nothing(struct round *r, uint64_t *rng)
{
    (void)r;
    (void)rng;
}

static side_fn *const side_ops[] = {side_yield, side_sleep, side_mutex, side_nothing,
                                    side_nothing, side_nothing};
#define NSIDE_OPS (sizeof side_ops / sizeof side_ops[0])

static void side(struct round *r, uint64_t *rng)
{
    side_ops[rnd(rng) % NSIDE_OPS](r, rng);
}

/* Up to max distinct random channels, skipping those marked in `skip` (may be NULL). */
static unsigned pick_cands(struct round *r, uint64_t *rng, unsigned max, const bool *skip,
                           struct chan_slot **cands, unsigned *idx)
{
    unsigned n = 1 + (unsigned)(rnd(rng) % max), got = 0;
    for (unsigned tries = 0; got < n && tries < 2 * NCHAN; tries++) {
        unsigned k = (unsigned)(rnd(rng) % NCHAN);
        bool dup = skip && skip[k];
        for (unsigned j = 0; j < got && !dup; j++)
            dup = idx[j] == k;
        if (!dup) {
            idx[got] = k;
            cands[got++] = &r->chans[k];
        }
    }
    return got;
}

/* Send message id over one of the given channels; account for it on the channel that
   took it.  Returns the errno (0: sent). */
static int do_send(struct round *r, struct chan_slot *c, uint64_t id, uint64_t *rng,
                   bool forever_ok)
{
    unsigned op = (unsigned)(rnd(rng) % NSEND_OPS), idx[MAXCANDS], chosen = 0;
    struct chan_slot *cands[MAXCANDS] = {c};
    unsigned n = 1;
    if (send_ops[op].maxcands > 1)
        n = pick_cands(r, rng, send_ops[op].maxcands, NULL, cands, idx);
    int64_t dl = pick_deadline(rng, forever_ok);
    int rc = send_ops[op].fn(cands, n, id, dl, &chosen);
    int err = rc ? errno : 0;
    if (send_ops[op].counter >= 0)
        count(r, send_ops[op].counter, 1);
    if (rc == 0) {
        atomic_fetch_add(&cands[chosen]->sent_n, 1);
        atomic_fetch_add(&cands[chosen]->sent_sum, mix(id));
        count(r, C_SEND_OK, 1);
    } else if (err == EPIPE) {
        count(r, C_SEND_EPIPE, 1);
    } else if (err == ETIMEDOUT && dl != -1) {
        count(r, C_SEND_TIMEDOUT, 1);
    } else {
        unexpected(r, "send", err);
    }
    return err;
}

/* Receive one message from one of the channels not marked in gone; account for it.
   Returns the errno (0: received, *m filled) and in *which the channel it concerns. */
static int do_recv(struct round *r, const bool *gone, struct msg *m, uint64_t *rng,
                   unsigned *which)
{
    unsigned op = (unsigned)(rnd(rng) % NRECV_OPS), idx[MAXCANDS], chosen = 0;
    struct chan_slot *cands[MAXCANDS];
    struct msg got[MAXCANDS];
    unsigned n = pick_cands(r, rng, recv_ops[op].maxcands, gone, cands, idx);
    if (n == 0) { /* every candidate we drew is gone: scan for one that is not */
        for (unsigned k = 0; k < NCHAN && !n; k++)
            if (!gone || !gone[k]) {
                idx[0] = k;
                cands[0] = &r->chans[k];
                n = 1;
            }
    }
    bool forever_ok = atomic_load(&r->closing);
    int64_t dl = pick_deadline(rng, forever_ok);
    int rc = recv_ops[op].fn(cands, n, got, dl, &chosen);
    int err = rc ? errno : 0;
    struct chan_slot *c = cands[chosen];
    *which = idx[chosen];
    if (recv_ops[op].counter >= 0)
        count(r, recv_ops[op].counter, 1);
    if (rc == 0) {
        *m = got[chosen];
        if (!msg_ok(m, c->esz))
            count(r, C_CORRUPT, 1);
        atomic_fetch_add(&c->recv_n, 1);
        atomic_fetch_add(&c->recv_sum, mix(m->id));
        count(r, C_RECV_OK, 1);
    } else if (err == EPIPE) {
        count(r, C_RECV_EPIPE, 1);
    } else if (err == ETIMEDOUT && dl != -1) {
        count(r, C_RECV_TIMEDOUT, 1);
    } else {
        unexpected(r, "recv", err);
    }
    return err;
}

/* -------------------------------------------------------------- producers ---- */

struct producer {
    struct round *r;
    unsigned index;
    uint64_t sent; /* messages sent, also returned as the task's result */
};

/* Frames a few hundred bytes each, so parked segments have very different sizes. */
static __attribute__((noinline)) uint64_t deep_send(struct producer *p, uint64_t *rng,
                                                     unsigned depth, unsigned seq)
{
    volatile char pad[200];
    pad[depth % sizeof pad] = (char)depth;
    if (depth)
        return deep_send(p, rng, depth - 1, seq) + (uint64_t)pad[depth % sizeof pad] -
               (uint64_t)(char)depth;
    struct round *r = p->r;
    struct chan_slot *c = &r->chans[rnd(rng) % NCHAN];
    uint64_t id = ((uint64_t)r->index << 40) | ((uint64_t)p->index << 12) | seq;
    return do_send(r, c, id, rng, true) == 0;
}

static __attribute__((noreturn)) void exit_with(uint64_t sent)
{
    tp_exit((void *)(uintptr_t)sent);
    abort(); /* tp_exit returns only outside a task */
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct round *r = p->r;
    uint64_t rng = r->seed ^ mix(p->index + 1);
    for (unsigned seq = 0; seq < MSGS_PER_PROD; seq++) {
        unsigned depth = (rnd(&rng) % 4 == 0) ? (unsigned)(rnd(&rng) % 40) : 0;
        if (depth)
            count(r, C_DEEP, 1);
        p->sent += deep_send(p, &rng, depth, seq);
        side(r, &rng);
    }
    unsigned char token = 1;
    if (tp_chan_send(r->done, &token, -1) != 0)
        unexpected(r, "done token", errno);
    count(r, C_FINISHED, 1);
    if (tp_self() && rnd(&rng) % 8 == 0) {
        count(r, C_EXIT, 1);
        exit_with(p->sent);
    }
    return (void *)(uintptr_t)p->sent;
}

/* Join t in one of several ways (or detach it); the result must be what it sent. */
static void reap(struct round *r, tp_task *t, struct producer *p, uint64_t *rng)
{
    void *res = NULL;
    int rc;
    switch (rnd(rng) % 5) {
    case 0: /* wait */
        count(r, C_JOIN_WAIT, 1);
        rc = tp_join(t, &res, -1);
        break;
    case 1: { /* poll; now and then park briefly, so this worker's timers fire even
                 where tp_yield does not run them (see test_yield_runs_expired_timers) */
        unsigned spins = 0;
        count(r, C_JOIN_POLL, 1);
        while ((rc = tp_join(t, &res, 0)) != 0 && errno == ETIMEDOUT) {
            if (++spins % 8)
                tp_yield();
            else
                tp_sleep(tp_now() + 1);
        }
        break;
    }
    case 2: /* short deadlines, retried */
        count(r, C_JOIN_RETRY, 1);
        while ((rc = tp_join(t, &res, tp_now() + 1)) != 0 && errno == ETIMEDOUT)
            count(r, C_JOIN_TIMEDOUT, 1);
        break;
    case 3: /* one short deadline, then give up and detach */
        rc = tp_join(t, &res, tp_now() + 1);
        if (rc != 0 && errno == ETIMEDOUT) {
            count(r, C_JOIN_TIMEDOUT, 1);
            count(r, C_DETACH_LATE, 1);
            if (tp_detach(t) != 0)
                unexpected(r, "tp_detach after timeout", errno);
            return;
        }
        count(r, C_JOIN_WAIT, 1);
        break;
    default:
        count(r, C_DETACH, 1);
        if (tp_detach(t) != 0)
            unexpected(r, "tp_detach", errno);
        return;
    }
    if (rc != 0)
        unexpected(r, "tp_join", errno);
    else if ((uintptr_t)res != p->sent)
        unexpected(r, "join result differs from messages sent", 0);
}

struct spawner {
    struct round *r;
    struct producer *prods; /* PROD_PER_SPAWNER of them */
    tp_task *tasks[PROD_PER_SPAWNER];
};

static void *spawner_main(void *arg)
{
    struct spawner *sp = arg;
    struct round *r = sp->r;
    uint64_t rng = r->seed ^ mix((uintptr_t)sp);
    for (unsigned i = 0; i < PROD_PER_SPAWNER; i++) {
        sp->tasks[i] = tp_spawn(NULL, producer_main, &sp->prods[i]);
        if (!sp->tasks[i]) {
            unexpected(r, "tp_spawn(producer)", errno);
            continue;
        }
        count(r, C_SPAWNED, 1);
        if (rnd(&rng) % 4 == 0)
            side(r, &rng);
    }
    for (unsigned i = 0; i < PROD_PER_SPAWNER; i++)
        if (sp->tasks[i])
            reap(r, sp->tasks[i], &sp->prods[i], &rng);
    count(r, C_FINISHED, 1);
    return NULL;
}

/* -------------------------------------------------------------- consumers ---- */

/* The argument of consumers, relays and takers (on the heap, shared with the task). */
struct who {
    struct round *r;
    unsigned index; /* distinct per round: seeds the party's random choices */
};

/* Receive from random channels until every channel has said EPIPE. */
static void *consumer_main(void *arg)
{
    struct who *me = arg;
    struct round *r = me->r;
    uint64_t rng = r->seed ^ mix(me->index);
    bool gone[NCHAN] = {false};
    unsigned left = NCHAN, k;
    struct msg m;
    while (left) {
        if (do_recv(r, gone, &m, &rng, &k) == EPIPE && !gone[k]) {
            gone[k] = true;
            left--;
        }
        if (rnd(&rng) % 8 == 0)
            side(r, &rng);
    }
    if (tp_self()) {
        if (tp_wg_done(&r->consumers_left) != 0)
            unexpected(r, "tp_wg_done", errno);
        count(r, C_FINISHED, 1);
    }
    return NULL;
}

/* Move messages from one channel to another for a while. */
static void *relay_main(void *arg)
{
    struct who *me = arg;
    struct round *r = me->r;
    uint64_t rng = r->seed ^ mix(me->index + 7777);
    struct msg m;
    unsigned k;
    for (unsigned i = 0; i < 200 && !atomic_load(&r->closing); i++) {
        if (do_recv(r, NULL, &m, &rng, &k) != 0)
            continue;
        /* the same id goes on, re-encoded for the next channel's element size */
        if (do_send(r, &r->chans[rnd(&rng) % NCHAN], m.id, &rng, true) == 0)
            count(r, C_RELAYED, 1);
    }
    count(r, C_FINISHED, 1);
    return NULL;
}

/* Take the tickets that side_mutex hands out, waiting on the condition (deadline -1 or
   a few ms); leave once no more will come and none is left. */
static void *taker_main(void *arg)
{
    struct who *me = arg;
    struct round *r = me->r;
    uint64_t rng = r->seed ^ mix(me->index + 31337);
    if (tp_mutex_lock(&r->mu) != 0) {
        unexpected(r, "taker lock", errno);
        return NULL;
    }
    for (;;) {
        while (r->tickets == 0 && !r->no_more_tickets) {
            int64_t dl = rnd(&rng) % 3 == 0 ? tp_now() + 1 + (int64_t)(rnd(&rng) % 3) : -1;
            count(r, C_COND_WAIT, 1);
            if (tp_cond_wait(&r->cv, &r->mu, dl) == 0)
                continue;
            if (errno == ETIMEDOUT && dl != -1)
                count(r, C_COND_TIMEDOUT, 1);
            else
                unexpected(r, "tp_cond_wait", errno);
        }
        if (r->tickets == 0)
            break;
        r->tickets--;
        r->taken++;
        if (rnd(&rng) % 4 == 0) { /* let go for a moment; may make tickets itself */
            tp_mutex_unlock(&r->mu);
            side(r, &rng);
            if (tp_mutex_lock(&r->mu) != 0) {
                unexpected(r, "taker relock", errno);
                return NULL;
            }
        }
    }
    if (tp_mutex_unlock(&r->mu) != 0) /* cond_wait gave it back in every case */
        unexpected(r, "taker unlock", errno);
    count(r, C_FINISHED, 1);
    return NULL;
}

/* Close a couple of channels early, while traffic is flowing. */
static void *closer_main(void *arg)
{
    struct round *r = arg;
    uint64_t rng = r->seed ^ 0xC105E;
    for (int i = 0; i < 2; i++) {
        tp_sleep(tp_now() + 2 + (int64_t)(rnd(&rng) % 10));
        if (tp_chan_close(r->chans[rnd(&rng) % NCHAN].ch) == 0)
            count(r, C_CLOSES_EARLY, 1);
        else if (errno != EPIPE)
            unexpected(r, "early close", errno);
    }
    /* Then watch the consumers finish, with short deadlines. */
    for (;;) {
        count(r, C_WG_WAIT, 1);
        if (tp_wg_wait(&r->consumers_left, tp_now() + 1 + (int64_t)(rnd(&rng) % 3)) == 0)
            break;
        if (errno != ETIMEDOUT) {
            unexpected(r, "tp_wg_wait", errno);
            break;
        }
    }
    count(r, C_FINISHED, 1);
    return NULL;
}

/* ------------------------------------------------------------------ round ---- */

static const size_t caps[] = {0, 0, 0, 1, 2, 4, 16};
static const size_t eszs[] = {16, 24, 64};

struct totals {
    uint64_t rounds, c[C_NCOUNT], switches, copied, steals, tasks_spawned;
};

static tp_task *spawn_counted(struct round *r, void *(*fn)(void *), void *arg)
{
    tp_task *t = tp_spawn(r->pool, fn, arg);
    ck_assert_msg(t != NULL, "tp_spawn: errno %d", errno);
    count(r, C_SPAWNED, 1);
    return t;
}

static void run_round(struct round *r, struct totals *tot)
{
    uint64_t rng = r->seed;
    tp_pool_attr attr = {.workers = r->index % 2 ? 3 : 0, .stack_size = 0};
    r->pool = tp_pool_create(&attr);
    ck_assert_msg(r->pool != NULL, "tp_pool_create: errno %d", errno);
    for (unsigned i = 0; i < NCHAN; i++) {
        struct chan_slot *c = &r->chans[i];
        c->cap = caps[rnd(&rng) % (sizeof caps / sizeof caps[0])];
        c->esz = eszs[rnd(&rng) % (sizeof eszs / sizeof eszs[0])];
        c->ch = tp_chan_create(c->esz, c->cap);
        ck_assert_ptr_nonnull(c->ch);
    }
    r->done = tp_chan_create(1, NPROD + NTHREAD_PROD);
    ck_assert_ptr_nonnull(r->done);
    ck_assert_int_eq(tp_mutex_init(&r->mu), 0);
    ck_assert_int_eq(tp_cond_init(&r->cv), 0);
    ck_assert_int_eq(tp_wg_init(&r->consumers_left), 0);
    ck_assert_int_eq(tp_wg_add(&r->consumers_left, NCONS), 0);

    struct producer *prods = calloc(NPROD + NTHREAD_PROD, sizeof *prods);
    struct spawner *spawners = calloc(NSPAWNERS, sizeof *spawners);
    struct who *ids = calloc(NCONS + NRELAY + NTHREAD_CONS + NTAKERS, sizeof *ids);
    ck_assert(prods && spawners && ids);
    for (unsigned i = 0; i < NPROD + NTHREAD_PROD; i++)
        prods[i] = (struct producer){.r = r, .index = i};
    for (unsigned i = 0; i < NCONS + NRELAY + NTHREAD_CONS + NTAKERS; i++) {
        ids[i] = (struct who){.r = r, .index = i + 1};
    }

    /* Consumers, relays and the closer first, then the producers. */
    tp_task *cons[NCONS], *relays[NRELAY], *spw[NSPAWNERS], *bymain[PROD_BY_MAIN];
    tp_task *takers[NTAKERS];
    for (unsigned i = 0; i < NTAKERS; i++)
        takers[i] = spawn_counted(r, taker_main, &ids[NCONS + NRELAY + NTHREAD_CONS + i]);
    for (unsigned i = 0; i < NCONS; i++)
        cons[i] = spawn_counted(r, consumer_main, &ids[i]);
    for (unsigned i = 0; i < NRELAY; i++)
        relays[i] = spawn_counted(r, relay_main, &ids[NCONS + i]);
    tp_task *closer = spawn_counted(r, closer_main, r);
    pthread_t tcons[NTHREAD_CONS], tprod[NTHREAD_PROD];
    for (unsigned i = 0; i < NTHREAD_CONS; i++)
        ck_assert_int_eq(pthread_create(&tcons[i], NULL, consumer_main, &ids[NCONS + NRELAY + i]),
                         0);
    for (unsigned i = 0; i < NSPAWNERS; i++) {
        spawners[i] = (struct spawner){.r = r, .prods = &prods[i * PROD_PER_SPAWNER]};
        spw[i] = spawn_counted(r, spawner_main, &spawners[i]);
    }
    for (unsigned i = 0; i < PROD_BY_MAIN; i++)
        bymain[i] = spawn_counted(r, producer_main, &prods[NSPAWNERS * PROD_PER_SPAWNER + i]);
    for (unsigned i = 0; i < NTHREAD_PROD; i++)
        ck_assert_int_eq(pthread_create(&tprod[i], NULL, producer_main, &prods[NPROD + i]), 0);

    /* Every producer reports; then the final close lets consumers drain and stop. */
    for (unsigned i = 0; i < NPROD + NTHREAD_PROD; i++) {
        unsigned char token;
        ck_assert_msg(tp_chan_recv(r->done, &token, -1) == 0, "done: errno %d", errno);
    }
    atomic_store(&r->closing, true);
    for (unsigned i = 0; i < NCHAN; i++)
        ck_assert(tp_chan_close(r->chans[i].ch) == 0 || errno == EPIPE);

    for (unsigned i = 0; i < PROD_BY_MAIN; i++)
        reap(r, bymain[i], &prods[NSPAWNERS * PROD_PER_SPAWNER + i], &rng);
    for (unsigned i = 0; i < NTHREAD_PROD; i++)
        ck_assert_int_eq(pthread_join(tprod[i], NULL), 0);
    for (unsigned i = 0; i < NTHREAD_CONS; i++)
        ck_assert_int_eq(pthread_join(tcons[i], NULL), 0);
    ck_assert_int_eq(tp_wg_wait(&r->consumers_left, -1), 0);
    count(r, C_WG_WAIT, 1);
    for (unsigned i = 0; i < NCONS; i++)
        ck_assert_int_eq(tp_join(cons[i], NULL, -1), 0);
    for (unsigned i = 0; i < NRELAY; i++)
        ck_assert_int_eq(tp_join(relays[i], NULL, -1), 0);
    ck_assert_int_eq(tp_join(closer, NULL, -1), 0);
    for (unsigned i = 0; i < NSPAWNERS; i++)
        ck_assert_int_eq(tp_join(spw[i], NULL, -1), 0);
    /* Nobody makes tickets any more (taker tasks make some, but only while at least one
       taker is still running, and every taker drains before it leaves). */
    ck_assert_int_eq(tp_mutex_lock(&r->mu), 0);
    r->no_more_tickets = true;
    ck_assert_int_eq(tp_cond_broadcast(&r->cv), 0);
    ck_assert_int_eq(tp_mutex_unlock(&r->mu), 0);
    for (unsigned i = 0; i < NTAKERS; i++)
        ck_assert_int_eq(tp_join(takers[i], NULL, -1), 0);
    ck_assert_int_eq(tp_pool_wait(r->pool), 0); /* detached producers */

    /* Nothing lost, nothing duplicated, nothing corrupted, nothing unexpected. */
    ck_assert_msg(r->c[C_UNEXPECTED] == 0, "round %u: %" PRIu64 " unexpected results, first: %s",
                  r->index, (uint64_t)r->c[C_UNEXPECTED], r->first_error);
    ck_assert_uint_eq(r->c[C_CORRUPT], 0);
    for (unsigned i = 0; i < NCHAN; i++) {
        struct chan_slot *c = &r->chans[i];
        ck_assert_msg(c->sent_n == c->recv_n && c->sent_sum == c->recv_sum,
                      "round %u channel %u (cap %zu, esz %zu): sent %" PRIu64 " (sum %016" PRIx64
                      "), received %" PRIu64 " (sum %016" PRIx64 ")",
                      r->index, i, c->cap, c->esz, (uint64_t)c->sent_n, (uint64_t)c->sent_sum,
                      (uint64_t)c->recv_n, (uint64_t)c->recv_sum);
        ck_assert_int_eq(tp_chan_destroy(c->ch), 0);
    }
    ck_assert_int_eq(tp_chan_destroy(r->done), 0);

    /* Mutual exclusion held, and every ticket handed out was taken exactly once. */
    ck_assert_uint_eq(r->guarded, r->c[C_MUTEX]);
    ck_assert_uint_eq(r->taken, r->c[C_TICKETS]);
    ck_assert_uint_eq(r->tickets, 0);
    ck_assert_int_eq(tp_mutex_destroy(&r->mu), 0);
    ck_assert_int_eq(tp_cond_destroy(&r->cv), 0);
    ck_assert_int_eq(tp_wg_destroy(&r->consumers_left), 0);

    /* Every task accounted for, nothing left in the pool. */
    uint64_t spawned = r->c[C_SPAWNED];
    ck_assert_uint_eq(spawned, NCONS + NRELAY + 1 + NSPAWNERS + NPROD + NTAKERS);
    ck_assert_uint_eq(r->c[C_FINISHED], spawned + NTHREAD_PROD);
    ck_assert_uint_eq(r->c[C_JOIN_WAIT] + r->c[C_JOIN_POLL] + r->c[C_JOIN_RETRY] +
                          r->c[C_DETACH] + r->c[C_DETACH_LATE],
                      NPROD);
    tp_stats st;
    ck_assert_int_eq(tp_pool_stats(r->pool, &st), 0);
    ck_assert_uint_eq(st.tasks_live, 0);
    ck_assert_uint_eq(st.tasks_parked, 0);
    ck_assert_uint_eq(st.saved_bytes, 0);
    ck_assert_uint_eq(st.saved_capacity, 0);
    ck_assert_uint_eq(st.tasks_spawned, spawned);
    ck_assert_int_eq(tp_pool_destroy(r->pool), 0);

    tot->rounds++;
    for (int k = 0; k < C_NCOUNT; k++)
        tot->c[k] += r->c[k];
    tot->switches += st.switches;
    tot->copied += st.copied_bytes;
    tot->steals += st.steals;
    tot->tasks_spawned += st.tasks_spawned;
    free(prods);
    free(spawners);
    free(ids);
}

START_TEST(test_soak)
{
    const char *secs_s = getenv("SOAK_SECONDS");
    const char *seed_s = getenv("SOAK_SEED");
    double secs = secs_s && *secs_s ? atof(secs_s) : 3.0;
    uint64_t seed = seed_s && *seed_s ? strtoull(seed_s, NULL, 0)
                                      : mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    printf("soak: %.0f s, seed %" PRIu64 " (SOAK_SEED to replay the same choices)\n", secs, seed);
    fflush(stdout);
    struct totals tot;
    memset(&tot, 0, sizeof tot);
    int64_t end = tp_now() + (int64_t)(secs * 1000);
    do {
        struct round *r = calloc(1, sizeof *r);
        ck_assert_ptr_nonnull(r);
        r->index = (unsigned)tot.rounds;
        r->seed = mix(seed + tot.rounds);
        atomic_flag_clear(&r->error_taken);
        run_round(r, &tot);
        free(r);
    } while (tp_now() < end);
    printf("soak: %" PRIu64 " rounds, all checks passed; nothing lost, duplicated or leaked\n",
           tot.rounds);
    printf("soak: messages: %" PRIu64 " sent = %" PRIu64 " received (%" PRIu64
           " of them relayed)\n",
           tot.c[C_SEND_OK], tot.c[C_RECV_OK], tot.c[C_RELAYED]);
    printf("soak: tasks: %" PRIu64 " spawned = %" PRIu64 " finished (pool counted %" PRIu64
           "), plus %u plain threads per round\n",
           tot.c[C_SPAWNED], tot.c[C_FINISHED] - tot.rounds * NTHREAD_PROD, tot.tasks_spawned,
           NTHREAD_PROD + NTHREAD_CONS);
    printf("soak: switches %" PRIu64 ", stack bytes copied %" PRIu64 ", steals %" PRIu64 "\n",
           tot.switches, tot.copied, tot.steals);
    printf("soak:");
    for (int k = 0; k < C_NCOUNT; k++)
        printf("%s %s %" PRIu64, k ? "," : "", cnames[k], tot.c[k]);
    printf("\n");
}
END_TEST

/* ------------------------------------------------------------- liveness ---- */

/* A task that polls (tp_yield in a loop) must not stop the other tasks of its worker
   from timing out: their deadlines pass while it polls, and the one it polls for is
   set by such a timed-out task.  Fails by hanging (the test's timeout) when tp_yield
   returns at once without running expired timers. */
static tp_chan *never;
static atomic_int timed_out;

static void *times_out(void *arg)
{
    (void)arg;
    int v;
    if (tp_chan_recv(never, &v, tp_now() + 5) == -1 && errno == ETIMEDOUT)
        atomic_store(&timed_out, 1);
    else
        atomic_store(&timed_out, 2);
    return NULL;
}

static void *polls(void *arg)
{
    (void)arg;
    while (!atomic_load(&timed_out))
        tp_yield();
    return NULL;
}

START_TEST(test_yield_runs_expired_timers)
{
    tp_pool *p = test_pool(1);
    never = tp_chan_create(sizeof(int), 0);
    ck_assert_ptr_nonnull(never);
    tp_task *a = tp_spawn(p, times_out, NULL);
    tp_task *b = tp_spawn(p, polls, NULL);
    ck_assert(a && b);
    ck_assert_int_eq(tp_join(a, NULL, -1), 0);
    ck_assert_int_eq(tp_join(b, NULL, -1), 0);
    ck_assert_int_eq(atomic_load(&timed_out), 1);
    ck_assert_int_eq(tp_chan_destroy(never), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* --------------------------------------------------------------- races ---- */

/* A join whose deadline passes just as the task finishes.  The joiner's timeout and the
   finisher both go for the joiner's wait record; whichever loses must leave it alone,
   because once tp_join has returned ETIMEDOUT that memory (here: the joiner's stack) is
   reused -- by the next join's wait record, say.  A finisher that completed such a
   stale record would make a later tp_join return 0 for a task still running (and free
   it), which the result check below sees; TSan reports it as a race on the stack. */
struct racer {
    unsigned long index;
    int64_t deadline;
};

static void *finish_at_deadline(void *arg)
{
    struct racer *rc = arg;
    while (tp_now() < rc->deadline)
        ;
    return (void *)(uintptr_t)(rc->index * 2 + 1); /* differs from the argument */
}

/* Reuse the stack where the previous call's frames (and wait record) were. */
static __attribute__((noinline)) void scribble(void)
{
    volatile char buf[512];
    memset((char *)buf, 0xA5, sizeof buf);
}

START_TEST(test_join_timeout_racing_finish)
{
    tp_pool *p = test_pool(2);
    struct racer *rc = calloc(1, sizeof *rc);
    unsigned long n = 0, timeouts = 0;
    int64_t end = tp_now() + 1500; /* how long to keep trying, not a timing assertion */
    for (; tp_now() < end; n++) {
        rc->index = n;
        rc->deadline = tp_now() + 1;
        tp_task *t = tp_spawn(p, finish_at_deadline, rc);
        ck_assert_ptr_nonnull(t);
        void *res = NULL;
        if (tp_join(t, &res, rc->deadline) != 0) {
            ck_assert_int_eq(errno, ETIMEDOUT);
            timeouts++;
            scribble();
            ck_assert_int_eq(tp_join(t, &res, -1), 0);
        }
        ck_assert_ptr_eq(res, (void *)(uintptr_t)(n * 2 + 1));
        scribble();
    }
    printf("races: %lu joins racing the end of their task, %lu timed out first\n", n, timeouts);
    free(rc);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

int main(void)
{
    const char *secs_s = getenv("SOAK_SECONDS");
    double secs = secs_s && *secs_s ? atof(secs_s) : 3.0;
    Suite *s = suite_create("soak");
    TCase *tc = tcase_create("soak");
    tcase_set_timeout(tc, secs + 120);
    tcase_add_test(tc, test_soak);
    suite_add_tcase(s, tc);
    TCase *live = tcase_create("liveness");
    tcase_set_timeout(live, 10);
    tcase_add_test(live, test_yield_runs_expired_timers);
    suite_add_tcase(s, live);
    TCase *races = tcase_create("races");
    tcase_set_timeout(races, 30);
    tcase_add_test(races, test_join_timeout_racing_finish);
    suite_add_tcase(s, races);
    return test_run(s);
}
