/* test_chan.c -- channels: buffered and unbuffered, FIFO, capacity, close and drain,
 * deadlines, destroy while busy, large elements, plain-thread senders and receivers,
 * cross-worker traffic where every message is counted (nothing lost or duplicated). */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

START_TEST(test_create_bad)
{
    ck_assert_err(tp_chan_create(0, 1), EINVAL);
    ck_assert_err(tp_chan_create(8, SIZE_MAX / 4), EINVAL);
    ck_assert_err(tp_chan_create(SIZE_MAX, 0), EINVAL);
    tp_chan *ch = tp_chan_create(4, 0);
    int v = 0;
    ck_assert_err(tp_chan_send(NULL, &v, 0), EINVAL);
    ck_assert_err(tp_chan_recv(NULL, &v, 0), EINVAL);
    ck_assert_err(tp_chan_send(ch, NULL, 0), EINVAL);
    ck_assert_err(tp_chan_recv(ch, NULL, 0), EINVAL);
    ck_assert_err(tp_chan_send(ch, &v, -2), EINVAL);
    ck_assert_err(tp_chan_recv(ch, &v, -7), EINVAL);
    ck_assert_err(tp_chan_close(NULL), EINVAL);
    ck_assert_err(tp_chan_destroy(NULL), EINVAL);
    ck_assert_int_eq(tp_chan_destroy(ch), 0);
}
END_TEST

START_TEST(test_buffered_fifo_and_capacity)
{
    tp_chan *ch = tp_chan_create(sizeof(int), 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(tp_chan_send(ch, &i, 0), 0);
    int v = 99;
    ck_assert_err(tp_chan_send(ch, &v, 0), ETIMEDOUT); /* full */
    for (int round = 0; round < 3; round++) { /* wrap around the ring */
        for (int i = 0; i < 3; i++) {
            ck_assert_int_eq(tp_chan_recv(ch, &v, 0), 0);
            ck_assert_int_eq(v, round * 3 + i);
            int w = round * 3 + i + 5;
            ck_assert_int_eq(tp_chan_send(ch, &w, 0), 0);
        }
    }
    for (int i = 9; i < 14; i++) {
        ck_assert_int_eq(tp_chan_recv(ch, &v, 0), 0);
        ck_assert_int_eq(v, i);
    }
    ck_assert_err(tp_chan_recv(ch, &v, 0), ETIMEDOUT); /* empty */
    tp_chan_destroy(ch);
}
END_TEST

START_TEST(test_unbuffered_needs_partner)
{
    tp_chan *ch = tp_chan_create(sizeof(int), 0);
    int v = 1;
    ck_assert_err(tp_chan_send(ch, &v, 0), ETIMEDOUT);
    ck_assert_err(tp_chan_recv(ch, &v, 0), ETIMEDOUT);
    int64_t d = tp_now() + 25;
    ck_assert_err(tp_chan_recv(ch, &v, d), ETIMEDOUT);
    ck_assert(tp_now() >= d);
    d = tp_now() + 25;
    ck_assert_err(tp_chan_send(ch, &v, d), ETIMEDOUT);
    ck_assert(tp_now() >= d);
    ck_assert_int_eq(tp_chan_destroy(ch), 0); /* the timed-out waiters are gone */
}
END_TEST

START_TEST(test_close_semantics)
{
    tp_chan *ch = tp_chan_create(sizeof(int), 4);
    for (int i = 0; i < 3; i++)
        tp_chan_send(ch, &i, -1);
    ck_assert_int_eq(tp_chan_close(ch), 0);
    ck_assert_err(tp_chan_close(ch), EPIPE);
    int v = 7;
    ck_assert_err(tp_chan_send(ch, &v, -1), EPIPE);
    for (int i = 0; i < 3; i++) { /* receivers drain what is buffered */
        ck_assert_int_eq(tp_chan_recv(ch, &v, -1), 0);
        ck_assert_int_eq(v, i);
    }
    ck_assert_err(tp_chan_recv(ch, &v, -1), EPIPE); /* then fail, even with no deadline */
    ck_assert_err(tp_chan_recv(ch, &v, 0), EPIPE);
    tp_chan_destroy(ch);
}
END_TEST

/* Close wakes every waiter: blocked receivers and blocked senders, tasks and threads. */
static tp_chan *cw_recv_ch, *cw_send_ch;
static atomic_int cw_epipe;

static void *block_recv(void *arg)
{
    int v;
    (void)arg;
    if (tp_chan_recv(cw_recv_ch, &v, -1) == -1 && errno == EPIPE)
        atomic_fetch_add(&cw_epipe, 1);
    return NULL;
}

static void *block_send(void *arg)
{
    int v = 1;
    (void)arg;
    if (tp_chan_send(cw_send_ch, &v, -1) == -1 && errno == EPIPE)
        atomic_fetch_add(&cw_epipe, 1);
    return NULL;
}

START_TEST(test_close_wakes_waiters)
{
    tp_pool *p = test_pool(2);
    cw_recv_ch = tp_chan_create(sizeof(int), 0);
    cw_send_ch = tp_chan_create(sizeof(int), 1);
    int one = 1;
    tp_chan_send(cw_send_ch, &one, -1); /* full: senders will block */
    atomic_store(&cw_epipe, 0);
    tp_task *t[20];
    for (int i = 0; i < 10; i++) {
        t[2 * i] = tp_spawn(p, block_recv, NULL);
        t[2 * i + 1] = tp_spawn(p, block_send, NULL);
    }
    pthread_t th[4];
    pthread_create(&th[0], NULL, block_recv, NULL);
    pthread_create(&th[1], NULL, block_send, NULL);
    pthread_create(&th[2], NULL, block_recv, NULL);
    pthread_create(&th[3], NULL, block_send, NULL);
    wait_parked(p, 20); /* the threads block eventually either way */
    ck_assert_err(tp_chan_destroy(cw_recv_ch), EBUSY);
    ck_assert_err(tp_chan_destroy(cw_send_ch), EBUSY);
    ck_assert_int_eq(tp_chan_close(cw_recv_ch), 0);
    ck_assert_int_eq(tp_chan_close(cw_send_ch), 0);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(tp_join(t[i], NULL, -1), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&cw_epipe), 24);
    int v;
    ck_assert_int_eq(tp_chan_recv(cw_send_ch, &v, -1), 0); /* the buffered value drains */
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(tp_chan_destroy(cw_recv_ch), 0);
    ck_assert_int_eq(tp_chan_destroy(cw_send_ch), 0);
    tp_pool_destroy(p);
}
END_TEST

/* Waiting senders are served first come, first served, and their values keep order
   when they move into the buffer. */
static tp_chan *order_ch;

static void *send_one(void *arg)
{
    int v = (int)(intptr_t)arg;
    return (void *)(intptr_t)tp_chan_send(order_ch, &v, -1);
}

START_TEST(test_waiting_senders_fifo)
{
    for (size_t cap = 0; cap <= 2; cap++) {
        tp_pool *p = test_pool(1);
        order_ch = tp_chan_create(sizeof(int), cap);
        int base = 1000;
        for (size_t i = 0; i < cap; i++) { /* fill the buffer first */
            int v = base + (int)i;
            tp_chan_send(order_ch, &v, -1);
        }
        tp_task *t[8];
        for (int i = 0; i < 8; i++) { /* park them one at a time, in order */
            t[i] = tp_spawn(p, send_one, (void *)(intptr_t)i);
            wait_parked(p, (uint64_t)i + 1);
        }
        int v;
        for (size_t i = 0; i < cap; i++) {
            ck_assert_int_eq(tp_chan_recv(order_ch, &v, -1), 0);
            ck_assert_int_eq(v, base + (int)i);
        }
        for (int i = 0; i < 8; i++) {
            ck_assert_int_eq(tp_chan_recv(order_ch, &v, -1), 0);
            ck_assert_int_eq(v, i);
        }
        for (int i = 0; i < 8; i++)
            ck_assert_int_eq(tp_join(t[i], NULL, -1), 0);
        tp_chan_destroy(order_ch);
        tp_pool_destroy(p);
    }
}
END_TEST

/* Elements larger than the inline buffer, between tasks, threads and both. */
struct big {
    uint64_t seq;
    unsigned char pad[1000];
    uint64_t check;
};

static tp_chan *big_ch;

static void fill_big(struct big *b, uint64_t seq)
{
    b->seq = seq;
    for (size_t i = 0; i < sizeof b->pad; i++)
        b->pad[i] = (unsigned char)(seq + i);
    b->check = seq * 2654435761u;
}

static int big_ok(const struct big *b, uint64_t seq)
{
    if (b->seq != seq || b->check != seq * 2654435761u)
        return 0;
    for (size_t i = 0; i < sizeof b->pad; i++)
        if (b->pad[i] != (unsigned char)(seq + i))
            return 0;
    return 1;
}

static void *big_sender(void *arg)
{
    struct big b; /* on the task's own stack: copied at the call, never referenced later */
    for (uint64_t i = 0; i < 500; i++) {
        fill_big(&b, i);
        if (tp_chan_send(big_ch, &b, -1) != 0)
            return (void *)1;
    }
    return arg;
}

static void *big_receiver(void *arg)
{
    struct big b;
    for (uint64_t i = 0; i < 500; i++)
        if (tp_chan_recv(big_ch, &b, -1) != 0 || !big_ok(&b, i))
            return (void *)1;
    return arg;
}

START_TEST(test_large_elements)
{
    for (size_t cap = 0; cap <= 3; cap += 3) {
        tp_pool *p = test_pool(2);
        big_ch = tp_chan_create(sizeof(struct big), cap);
        /* task -> task */
        tp_task *s = tp_spawn(p, big_sender, NULL), *r = tp_spawn(p, big_receiver, NULL);
        void *rs = (void *)-1, *rr = (void *)-1;
        ck_assert_int_eq(tp_join(s, &rs, -1), 0);
        ck_assert_int_eq(tp_join(r, &rr, -1), 0);
        ck_assert_ptr_null(rs);
        ck_assert_ptr_null(rr);
        /* thread -> task and task -> thread */
        r = tp_spawn(p, big_receiver, NULL);
        ck_assert_ptr_null(big_sender(NULL));
        ck_assert_int_eq(tp_join(r, &rr, -1), 0);
        ck_assert_ptr_null(rr);
        s = tp_spawn(p, big_sender, NULL);
        ck_assert_ptr_null(big_receiver(NULL));
        ck_assert_int_eq(tp_join(s, &rs, -1), 0);
        tp_chan_destroy(big_ch);
        tp_pool_destroy(p);
    }
}
END_TEST

/* ------------------------------------------------ every small element size ---- */

/* A parked receiver of a value up to a pointer's size finds it in its control block
   and copies as many bytes as the element size it recorded when it parked.  With
   receivers of ten sizes parked at once on one worker and woken in another order, each
   must get exactly its own bytes and nothing past them. */
enum { NSIZES = 10 };
static const size_t sizes[NSIZES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16};
static tp_chan *size_ch[NSIZES];

static unsigned char size_byte(size_t k, size_t i)
{
    return (unsigned char)(k * 16 + i + 1);
}

static void *size_receiver(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    unsigned char dst[48];
    memset(dst, 0xee, sizeof dst);
    if (tp_chan_recv(size_ch[k], dst + 16, -1) != 0)
        return (void *)1;
    for (size_t i = 0; i < sizeof dst; i++) {
        bool inside = i >= 16 && i < 16 + sizes[k];
        if (dst[i] != (inside ? size_byte(k, i - 16) : 0xee))
            return (void *)2;
    }
    return NULL;
}

START_TEST(test_small_elements_parked_receivers)
{
    for (size_t cap = 0; cap <= 1; cap++) {
        tp_pool *p = test_pool(1);
        tp_task *r[NSIZES];
        for (size_t k = 0; k < NSIZES; k++) {
            size_ch[k] = tp_chan_create(sizes[k], cap);
            ck_assert_ptr_nonnull(size_ch[k]);
            r[k] = tp_spawn(p, size_receiver, (void *)(uintptr_t)k);
            ck_assert_ptr_nonnull(r[k]);
        }
        wait_parked(p, NSIZES);
        for (size_t k = NSIZES; k-- > 0;) { /* the reverse of the order they parked in */
            unsigned char src[16];
            for (size_t i = 0; i < sizeof src; i++)
                src[i] = size_byte(k, i);
            ck_assert_int_eq(tp_chan_send(size_ch[k], src, -1), 0);
        }
        for (size_t k = 0; k < NSIZES; k++) {
            void *res = (void *)-1;
            ck_assert_int_eq(tp_join(r[k], &res, -1), 0);
            ck_assert_msg(res == NULL, "receiver of %zu-byte elements (cap %zu): %s", sizes[k],
                          cap, res == (void *)1 ? "recv failed" : "wrong bytes");
            ck_assert_int_eq(tp_chan_destroy(size_ch[k]), 0);
        }
        tp_pool_destroy(p);
    }
}
END_TEST

/* ----------------------------------------------- many producers and consumers ---- */

/* Producers (tasks on both workers and plain threads) send sequence-tagged values;
   consumers (likewise) receive until close.  Every value must arrive exactly once, and
   values from one producer must arrive in that producer's order at any one consumer. */
enum { PRODUCERS = 8, THREAD_PRODUCERS = 2, CONSUMERS = 6, THREAD_CONSUMERS = 2, PER = 5000 };
static tp_chan *mpmc;
static atomic_uchar seen[(PRODUCERS + THREAD_PRODUCERS) * PER];
static atomic_int producers_left;
static atomic_int order_errors;

static void *producer(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    for (uint32_t i = 0; i < PER; i++) {
        uint64_t v = ((uint64_t)id << 32) | i;
        if (tp_chan_send(mpmc, &v, -1) != 0)
            return (void *)1;
        if ((i & 127) == 0)
            tp_yield();
    }
    if (atomic_fetch_sub(&producers_left, 1) == 1)
        tp_chan_close(mpmc);
    return NULL;
}

static void *consumer(void *arg)
{
    int64_t last[PRODUCERS + THREAD_PRODUCERS];
    uint64_t v;
    (void)arg;
    for (int i = 0; i < PRODUCERS + THREAD_PRODUCERS; i++)
        last[i] = -1;
    while (tp_chan_recv(mpmc, &v, -1) == 0) {
        uint32_t id = (uint32_t)(v >> 32), i = (uint32_t)v;
        if ((int64_t)i <= last[id])
            atomic_fetch_add(&order_errors, 1);
        last[id] = i;
        atomic_fetch_add(&seen[id * PER + i], 1);
    }
    return errno == EPIPE ? NULL : (void *)1;
}

static void run_mpmc(size_t cap)
{
    tp_pool *p = test_pool(2);
    mpmc = tp_chan_create(sizeof(uint64_t), cap);
    memset(seen, 0, sizeof seen);
    atomic_store(&producers_left, PRODUCERS + THREAD_PRODUCERS);
    atomic_store(&order_errors, 0);
    tp_task *c[CONSUMERS], *pr[PRODUCERS];
    pthread_t tc[THREAD_CONSUMERS], tpd[THREAD_PRODUCERS];
    for (int i = 0; i < CONSUMERS; i++)
        c[i] = tp_spawn(p, consumer, NULL);
    for (int i = 0; i < THREAD_CONSUMERS; i++)
        pthread_create(&tc[i], NULL, consumer, NULL);
    for (int i = 0; i < PRODUCERS; i++)
        pr[i] = tp_spawn(p, producer, (void *)(uintptr_t)i);
    for (int i = 0; i < THREAD_PRODUCERS; i++)
        pthread_create(&tpd[i], NULL, producer, (void *)(uintptr_t)(PRODUCERS + i));
    for (int i = 0; i < PRODUCERS; i++) {
        void *r = (void *)-1;
        ck_assert_int_eq(tp_join(pr[i], &r, -1), 0);
        ck_assert_ptr_null(r);
    }
    for (int i = 0; i < THREAD_PRODUCERS; i++)
        pthread_join(tpd[i], NULL);
    for (int i = 0; i < CONSUMERS; i++) {
        void *r = (void *)-1;
        ck_assert_int_eq(tp_join(c[i], &r, -1), 0);
        ck_assert_ptr_null(r);
    }
    for (int i = 0; i < THREAD_CONSUMERS; i++)
        pthread_join(tc[i], NULL);
    for (size_t i = 0; i < sizeof seen; i++)
        ck_assert_msg(seen[i] == 1, "value %zu seen %d times (cap %zu)", i, seen[i], cap);
    ck_assert_int_eq(atomic_load(&order_errors), 0);
    ck_assert_int_eq(tp_chan_destroy(mpmc), 0);
    tp_pool_destroy(p);
}

START_TEST(test_mpmc_unbuffered) { run_mpmc(0); }
END_TEST

START_TEST(test_mpmc_buffered) { run_mpmc(16); }
END_TEST

/* Timeouts racing with deliveries: senders and receivers use short deadlines; a send
   that returned 0 must be received exactly once, a send that timed out never. */
static tp_chan *race_ch;
static atomic_long sent_ok, recv_ok, sent_sum, recv_sum;
static atomic_int race_done;

static void *race_sender(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 1; i <= 3000; i++) {
        uint64_t v = id * 1000003 + i;
        if (tp_chan_send(race_ch, &v, tp_now() + (int64_t)(i % 3)) == 0) {
            atomic_fetch_add(&sent_ok, 1);
            atomic_fetch_add(&sent_sum, (long)v);
        } else if (errno != ETIMEDOUT) {
            return (void *)1;
        }
    }
    return NULL;
}

static void *race_receiver(void *arg)
{
    uint64_t v;
    (void)arg;
    while (!atomic_load(&race_done)) {
        if (tp_chan_recv(race_ch, &v, tp_now() + 1) == 0) {
            atomic_fetch_add(&recv_ok, 1);
            atomic_fetch_add(&recv_sum, (long)v);
        } else if (errno != ETIMEDOUT) {
            return (void *)1;
        }
    }
    while (tp_chan_recv(race_ch, &v, 0) == 0) { /* drain */
        atomic_fetch_add(&recv_ok, 1);
        atomic_fetch_add(&recv_sum, (long)v);
    }
    return NULL;
}

START_TEST(test_timeouts_lose_nothing)
{
    for (size_t cap = 0; cap <= 2; cap += 2) {
        tp_pool *p = test_pool(2);
        race_ch = tp_chan_create(sizeof(uint64_t), cap);
        atomic_store(&sent_ok, 0);
        atomic_store(&recv_ok, 0);
        atomic_store(&sent_sum, 0);
        atomic_store(&recv_sum, 0);
        atomic_store(&race_done, 0);
        tp_task *s[4], *r[3];
        pthread_t th;
        for (int i = 0; i < 4; i++)
            s[i] = tp_spawn(p, race_sender, (void *)(uintptr_t)(i + 1));
        for (int i = 0; i < 3; i++)
            r[i] = tp_spawn(p, race_receiver, NULL);
        pthread_create(&th, NULL, race_receiver, NULL);
        for (int i = 0; i < 4; i++) {
            void *rv = (void *)-1;
            ck_assert_int_eq(tp_join(s[i], &rv, -1), 0);
            ck_assert_ptr_null(rv);
        }
        atomic_store(&race_done, 1);
        for (int i = 0; i < 3; i++) {
            void *rv = (void *)-1;
            ck_assert_int_eq(tp_join(r[i], &rv, -1), 0);
            ck_assert_ptr_null(rv);
        }
        pthread_join(th, NULL);
        ck_assert_int_gt(atomic_load(&sent_ok), 0);
        ck_assert_int_eq(atomic_load(&sent_ok), atomic_load(&recv_ok));
        ck_assert_int_eq(atomic_load(&sent_sum), atomic_load(&recv_sum));
        ck_assert_int_eq(tp_chan_destroy(race_ch), 0);
        tp_pool_destroy(p);
    }
}
END_TEST

/* Plain threads talk to each other through a channel, with no pool at all. */
static tp_chan *tt_ch;

static void *thread_echo(void *arg)
{
    int v;
    (void)arg;
    for (int i = 0; i < 2000; i++)
        if (tp_chan_recv(tt_ch, &v, -1) != 0 || v != i)
            return (void *)1;
    return NULL;
}

START_TEST(test_threads_only)
{
    tt_ch = tp_chan_create(sizeof(int), 0);
    pthread_t th;
    pthread_create(&th, NULL, thread_echo, NULL);
    for (int i = 0; i < 2000; i++)
        ck_assert_int_eq(tp_chan_send(tt_ch, &i, -1), 0);
    void *r = (void *)-1;
    pthread_join(th, &r);
    ck_assert_ptr_null(r);
    tp_chan_destroy(tt_ch);
}
END_TEST

/* Biased locks (src/chan.h): a channel used only by one worker's task becomes biased to
   that worker; a plain thread that then joins in revokes the bias while the task keeps
   going.  Every value must arrive once and in order, through tp_chan_* and tp_select
   alike, whatever the moment of the revocation. */
extern atomic_ulong tp__bias_granted, tp__bias_revoked;
bool tp__bias_enabled(void);

#define BIAS_ROUNDS 40
#define BIAS_SOLO 300  /* send + receive pairs alone: well past TP__BIAS_AFTER locks */
#define BIAS_VALUES 3000

static atomic_int bias_ready;

static void *bias_owner(void *arg)
{
    tp_chan *ch = arg;
    for (uint64_t i = 0; i < BIAS_SOLO; i++) { /* alone: the streak, then the bias */
        uint64_t v = ~i;
        if (tp_chan_send(ch, &i, -1) != 0)
            return (void *)1;
        tp_case c = {.ch = ch, .op = TP_RECV, .elem = &v};
        if ((i % 2 ? tp_select(&c, 1, -1) : tp_chan_recv(ch, &v, -1)) != 0)
            return (void *)2;
        if (v != i)
            return (void *)3;
    }
    uint64_t v; /* a deadline on a channel this worker owns: its own cancel path */
    errno = 0;
    if (tp_chan_recv(ch, &v, in_ms(1)) != -1 || errno != ETIMEDOUT)
        return (void *)4;
    atomic_store(&bias_ready, 1);
    for (uint64_t i = 0; i < BIAS_VALUES; i++) {
        tp_case c = {.ch = ch, .op = TP_SEND, .elem = &i};
        if ((i % 2 ? tp_select(&c, 1, -1) : tp_chan_send(ch, &i, -1)) != 0)
            return (void *)5;
    }
    return tp_chan_close(ch) == 0 ? NULL : (void *)6;
}

START_TEST(test_bias_revoked_under_traffic)
{
    unsigned long granted = atomic_load(&tp__bias_granted);
    unsigned long revoked = atomic_load(&tp__bias_revoked);
    tp_pool *p = test_pool(2);
    for (int round = 0; round < BIAS_ROUNDS; round++) {
        tp_chan *ch = tp_chan_create(sizeof(uint64_t), 4);
        ck_assert_ptr_nonnull(ch);
        atomic_store(&bias_ready, 0);
        tp_task *t = tp_spawn(p, bias_owner, ch);
        ck_assert_ptr_nonnull(t);
        while (!atomic_load(&bias_ready))
            sched_yield();
        uint64_t v, expect = 0;
        while (tp_chan_recv(ch, &v, -1) == 0) /* this thread revokes, mid-stream */
            ck_assert_uint_eq(v, expect++);
        ck_assert_int_eq(errno, EPIPE);
        ck_assert_uint_eq(expect, BIAS_VALUES);
        void *r = (void *)-1;
        ck_assert_int_eq(tp_join(t, &r, -1), 0);
        ck_assert_ptr_null(r);
        ck_assert_int_eq(tp_chan_destroy(ch), 0);
    }
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    if (tp__bias_enabled()) { /* (not under ThreadSanitizer, or without membarrier) */
        ck_assert_uint_ge(atomic_load(&tp__bias_granted) - granted, BIAS_ROUNDS);
        ck_assert_uint_ge(atomic_load(&tp__bias_revoked) - revoked, BIAS_ROUNDS);
    }
}
END_TEST

/* A buffered channel biased to its one user's worker has a fast path of its own
   (tp_chan_send/recv, for elements of 4, 8 and 16 bytes; others go the general way).
   A task fills and drains channels of six element sizes, a capacity of 5 so the ring
   wraps at no power of two, in batches of every size from 1 to full, well past the
   bias: every value must come out whole, in order, with nothing written past it, and
   a full or empty ring must say so. */
#define RING_CAP 5
#define RING_ROUNDS 300

static const size_t ring_size[] = {1, 3, 4, 8, 16, 24};
#define RING_SIZES (sizeof ring_size / sizeof ring_size[0])

static void ring_fill(unsigned char *e, size_t z, uint64_t i)
{
    for (size_t b = 0; b < z; b++)
        e[b] = (unsigned char)(i * 7 + b * 31 + 1);
}

static void *ring_user(void *arg)
{
    tp_chan **chs = arg;
    unsigned char e[24], got[40], want[24];
    for (size_t s = 0; s < RING_SIZES; s++) {
        size_t z = ring_size[s];
        uint64_t sent = 0, taken = 0;
        for (int r = 0; r < RING_ROUNDS; r++) {
            int batch = r % RING_CAP + 1;
            for (int k = 0; k < batch; k++) {
                ring_fill(e, z, sent++);
                ck_assert_int_eq(tp_chan_send(chs[s], e, 0), 0);
            }
            if (batch == RING_CAP)
                ck_assert_err(tp_chan_send(chs[s], e, 0), ETIMEDOUT); /* full */
            for (int k = 0; k < batch; k++) {
                memset(got, 0xee, sizeof got);
                ck_assert_int_eq(tp_chan_recv(chs[s], got + 8, 0), 0);
                ring_fill(want, z, taken++);
                ck_assert_int_eq(memcmp(got + 8, want, z), 0);
                for (size_t b = 0; b < sizeof got; b++) /* nothing else written */
                    if (b < 8 || b >= 8 + z)
                        ck_assert_uint_eq(got[b], 0xee);
            }
            ck_assert_err(tp_chan_recv(chs[s], got, 0), ETIMEDOUT); /* empty */
        }
    }
    return NULL;
}

START_TEST(test_bias_buffered_ring)
{
    unsigned long granted = atomic_load(&tp__bias_granted);
    tp_chan *chs[RING_SIZES];
    for (size_t s = 0; s < RING_SIZES; s++) {
        chs[s] = tp_chan_create(ring_size[s], RING_CAP);
        ck_assert_ptr_nonnull(chs[s]);
    }
    tp_pool *p = test_pool(1);
    tp_task *t = tp_spawn(p, ring_user, chs);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    for (size_t s = 0; s < RING_SIZES; s++)
        ck_assert_int_eq(tp_chan_destroy(chs[s]), 0);
    if (tp__bias_enabled()) /* every channel (not under ThreadSanitizer) */
        ck_assert_uint_ge(atomic_load(&tp__bias_granted) - granted, RING_SIZES);
}
END_TEST

/* An unbuffered channel biased to the worker of both its parties has a rendezvous and
   park path of its own (src/chan.c, send_biased and after).  Two tasks of one worker
   trade values over two such channels in every way that path must handle or hand on:
   values of 1, 4, 8 and 16 bytes (the last too big to travel in a registration), a
   deadline that expires, a select on the other side, and a close that wakes a parked
   sender and a parked receiver.  On one stack per worker too, where every park copies. */
#define RDV_ROUNDS 400 /* per element size: well past TP__BIAS_AFTER locks */

struct rdv {
    tp_chan *to[4], *from[4]; /* by element size: 1, 4, 8, 16 bytes */
    tp_chan *closing;
    tp_pool *pool;
    int bad;                  /* the partner's first failure, or 0 */
};

static const size_t rdv_size[4] = {1, 4, 8, 16};

/* An element of size z for round i: its bytes all vary with i. */
static void rdv_fill(unsigned char *e, size_t z, uint64_t i)
{
    for (size_t k = 0; k < z; k++)
        e[k] = (unsigned char)(i * 7 + k * 31 + z);
}

static void *rdv_partner(void *arg)
{
    struct rdv *d = arg;
    unsigned char e[16], want[16];
    for (int s = 0; s < 4; s++) {
        size_t z = rdv_size[s];
        for (uint64_t i = 0; i < RDV_ROUNDS; i++) {
            rdv_fill(want, z, i);
            if (i % 5 == 4) { /* a select on this side now and then */
                tp_case c = {.ch = d->to[s], .op = TP_RECV, .elem = e};
                if (tp_select(&c, 1, -1) != 0)
                    return d->bad = 1, NULL;
            } else if (tp_chan_recv(d->to[s], e, -1) != 0) {
                return d->bad = 2, NULL;
            }
            if (memcmp(e, want, z) != 0)
                return d->bad = 3, NULL;
            e[0] ^= 0xff; /* the reply differs from what came in */
            if (tp_chan_send(d->from[s], e, -1) != 0)
                return d->bad = 4, NULL;
        }
    }
    /* Park (in a send, then a receive) on channels that the owner closes. */
    uint64_t v = 1;
    errno = 0;
    if (tp_chan_send(d->closing, &v, -1) != -1 || errno != EPIPE)
        return d->bad = 5, NULL;
    errno = 0;
    if (tp_chan_recv(d->from[2], &v, -1) != -1 || errno != EPIPE)
        return d->bad = 6, NULL;
    return NULL;
}

/* In the owner: yield until the partner is parked (or has failed). */
static void rdv_wait_parked(struct rdv *d)
{
    tp_stats st;
    for (;;) {
        ck_assert_int_eq(d->bad, 0);
        ck_assert_int_eq(tp_pool_stats(d->pool, &st), 0);
        if (st.tasks_parked == 1)
            return;
        ck_assert_int_eq(tp_yield(), 0);
    }
}

static void *rdv_owner(void *arg)
{
    struct rdv *d = arg;
    unsigned char e[16], want[16];
    /* A streak of timed-out tries, partner-less, biases `closing` to this worker
       before the partner parks on it. */
    for (int i = 0; i < RDV_ROUNDS; i++)
        ck_assert_err(tp_chan_recv(d->closing, e, 0), ETIMEDOUT);
    tp_task *p = tp_spawn(NULL, rdv_partner, d);
    ck_assert_ptr_nonnull(p);
    for (int s = 0; s < 4; s++) {
        size_t z = rdv_size[s];
        for (uint64_t i = 0; i < RDV_ROUNDS; i++) {
            rdv_fill(e, z, i);
            ck_assert_int_eq(tp_chan_send(d->to[s], e, -1), 0);
            ck_assert_int_eq(tp_chan_recv(d->from[s], e, -1), 0);
            rdv_fill(want, z, i);
            want[0] ^= 0xff;
            ck_assert_int_eq(memcmp(e, want, z), 0);
        }
        /* Nobody on the other side now: a deadline expires, nothing is left queued. */
        ck_assert_err(tp_chan_recv(d->from[s], e, in_ms(2)), ETIMEDOUT);
        ck_assert_err(tp_chan_send(d->to[s], e, 0), ETIMEDOUT);
    }
    /* The partner is parked on `closing` (biased above) since its last reply; closed,
       it wakes, and parks again on from[2], which is closed in turn. */
    rdv_wait_parked(d);
    ck_assert_int_eq(tp_chan_close(d->closing), 0);
    rdv_wait_parked(d);
    ck_assert_int_eq(tp_chan_close(d->from[2]), 0);
    ck_assert_int_eq(tp_join(p, NULL, -1), 0);
    ck_assert_int_eq(d->bad, 0);
    return NULL;
}

static void rdv_run(unsigned stacks)
{
    unsigned long granted = atomic_load(&tp__bias_granted);
    tp_pool *p = test_pool_stacks(1, stacks);
    struct rdv *d = calloc(1, sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int s = 0; s < 4; s++) {
        d->to[s] = tp_chan_create(rdv_size[s], 0);
        d->from[s] = tp_chan_create(rdv_size[s], 0);
        ck_assert(d->to[s] && d->from[s]);
    }
    d->closing = tp_chan_create(sizeof(uint64_t), 0);
    ck_assert_ptr_nonnull(d->closing);
    d->pool = p;
    tp_task *t = tp_spawn(p, rdv_owner, d);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    for (int s = 0; s < 4; s++) {
        ck_assert_int_eq(tp_chan_destroy(d->to[s]), 0);
        ck_assert_int_eq(tp_chan_destroy(d->from[s]), 0);
    }
    ck_assert_int_eq(tp_chan_destroy(d->closing), 0);
    free(d);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
    if (tp__bias_enabled()) /* all nine channels (not under ThreadSanitizer) */
        ck_assert_uint_ge(atomic_load(&tp__bias_granted) - granted, 9);
}

START_TEST(test_bias_unbuffered_rendezvous) { rdv_run(0); }
END_TEST

START_TEST(test_bias_unbuffered_rendezvous_one_stack) { rdv_run(1); }
END_TEST

int main(void)
{
    Suite *s = suite_create("chan");
    TCase *tc = tcase_create("semantics");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_create_bad);
    tcase_add_test(tc, test_buffered_fifo_and_capacity);
    tcase_add_test(tc, test_unbuffered_needs_partner);
    tcase_add_test(tc, test_close_semantics);
    tcase_add_test(tc, test_close_wakes_waiters);
    tcase_add_test(tc, test_waiting_senders_fifo);
    tcase_add_test(tc, test_large_elements);
    tcase_add_test(tc, test_small_elements_parked_receivers);
    tcase_add_test(tc, test_threads_only);
    suite_add_tcase(s, tc);
    TCase *stress = tcase_create("concurrency");
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress, test_mpmc_unbuffered);
    tcase_add_test(stress, test_mpmc_buffered);
    tcase_add_test(stress, test_timeouts_lose_nothing);
    tcase_add_test(stress, test_bias_revoked_under_traffic);
    tcase_add_test(stress, test_bias_buffered_ring);
    tcase_add_test(stress, test_bias_unbuffered_rendezvous);
    tcase_add_test(stress, test_bias_unbuffered_rendezvous_one_stack);
    suite_add_tcase(s, stress);
    return test_run(s);
}
