/* test_pool.c -- pools: creation and attributes, waiting, destroying, statistics,
 * several pools at once, and the version. */
#include "config.h"
#include "tp_test.h"
#include "sanitize.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#if HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

START_TEST(test_create_defaults)
{
    tp_pool *p = tp_pool_create(NULL);
    ck_assert_ptr_nonnull(p);
    tp_stats st;
    ck_assert_int_eq(tp_pool_stats(p, &st), 0);
    ck_assert_uint_eq(st.workers, (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
    ck_assert_uint_eq(st.tasks_live, 0);
    ck_assert_uint_eq(st.tasks_parked, 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

START_TEST(test_create_bad_attr)
{
    tp_pool_attr a = {.workers = 100000, .stack_size = 0};
    ck_assert_err(tp_pool_create(&a), EINVAL);
    a = (tp_pool_attr){.workers = 1, .stack_size = 100};
    ck_assert_err(tp_pool_create(&a), EINVAL);
    a = (tp_pool_attr){.workers = 1, .stack_size = (size_t)1 << 40};
    ck_assert_err(tp_pool_create(&a), EINVAL);
    a = (tp_pool_attr){.workers = 1, .stacks = TP_POOL_MAX_STACKS + 1};
    ck_assert_err(tp_pool_create(&a), EINVAL);
    a = (tp_pool_attr){.workers = 1, .stacks = UINT_MAX};
    ck_assert_err(tp_pool_create(&a), EINVAL);
    ck_assert_err(tp_pool_wait(NULL), EINVAL);
    ck_assert_err(tp_pool_destroy(NULL), EINVAL);
    ck_assert_err(tp_pool_stats(NULL, NULL), EINVAL);
}
END_TEST

/* A small custom stack works as long as tasks stay within it. */
static void *use_8k(void *arg)
{
    volatile char buf[8192];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)i;
    tp_yield();
    return (void *)(uintptr_t)(buf[100] + (arg != NULL));
}

START_TEST(test_custom_stack_size)
{
    tp_pool_attr a = {.workers = 3, .stack_size = 64 * 1024};
    tp_pool *p = tp_pool_create(&a);
    ck_assert_ptr_nonnull(p);
    tp_stats st;
    tp_pool_stats(p, &st);
    ck_assert_uint_eq(st.workers, 3);
    tp_task *t[30];
    for (int i = 0; i < 30; i++)
        t[i] = tp_spawn(p, use_8k, NULL);
    for (int i = 0; i < 30; i++) {
        void *r;
        ck_assert_int_eq(tp_join(t[i], &r, -1), 0);
        ck_assert_ptr_eq(r, (void *)100);
    }
    tp_pool_destroy(p);
}
END_TEST

static atomic_int finished;

static void *slow_finish(void *arg)
{
    tp_sleep(tp_now() + (int64_t)(intptr_t)arg);
    atomic_fetch_add(&finished, 1);
    return NULL;
}

START_TEST(test_wait_counts_every_task)
{
    tp_pool *p = test_pool(2);
    atomic_store(&finished, 0);
    tp_task *joined[10];
    for (int i = 0; i < 10; i++)
        joined[i] = tp_spawn(p, slow_finish, (void *)(intptr_t)(i * 3));
    for (int i = 0; i < 10; i++)
        tp_detach(tp_spawn(p, slow_finish, (void *)(intptr_t)(i * 5)));
    ck_assert_int_eq(tp_pool_wait(p), 0);
    ck_assert_int_eq(atomic_load(&finished), 20); /* joined or not, all finished */
    tp_stats st;
    tp_pool_stats(p, &st);
    ck_assert_uint_eq(st.tasks_live, 0);
    ck_assert_uint_eq(st.tasks_spawned, 20);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(tp_join(joined[i], NULL, 0), 0); /* done: no wait needed */
    ck_assert_int_eq(tp_pool_wait(p), 0);                /* nothing left: at once */
    tp_pool_destroy(p);
}
END_TEST

static tp_pool *self_pool;

static void *wait_own_pool(void *arg)
{
    (void)arg;
    if (tp_pool_wait(self_pool) != -1 || errno != EDEADLK)
        return (void *)1;
    if (tp_pool_destroy(self_pool) != -1 || errno != EDEADLK)
        return (void *)2;
    return NULL;
}

START_TEST(test_wait_from_task_refused)
{
    self_pool = test_pool(1);
    void *r = (void *)-1;
    ck_assert_int_eq(tp_join(tp_spawn(self_pool, wait_own_pool, NULL), &r, -1), 0);
    ck_assert_ptr_null(r);
    tp_pool_destroy(self_pool);
}
END_TEST

/* Destroy waits for tasks that are still parked, until something releases them. */
static tp_chan *hold;

static void *parked_until_released(void *arg)
{
    int v;
    (void)arg;
    tp_chan_recv(hold, &v, -1);
    atomic_fetch_add(&finished, 1);
    return NULL;
}

static void *release_later(void *arg)
{
    (void)arg;
    /* runs in a plain thread: waits until both tasks are parked, then releases them */
    wait_parked(self_pool, 2);
    tp_chan_close(hold);
    return NULL;
}

START_TEST(test_destroy_waits_for_parked)
{
    self_pool = test_pool(2);
    hold = tp_chan_create(sizeof(int), 0);
    atomic_store(&finished, 0);
    tp_detach(tp_spawn(self_pool, parked_until_released, NULL));
    tp_detach(tp_spawn(self_pool, parked_until_released, NULL));
    pthread_t th;
    pthread_create(&th, NULL, release_later, NULL);
    ck_assert_int_eq(tp_pool_destroy(self_pool), 0);
    ck_assert_int_eq(atomic_load(&finished), 2); /* returned only after both finished */
    pthread_join(th, NULL);
    tp_chan_destroy(hold);
}
END_TEST

/* Several pools side by side; a pointer into one pool's stack is refused by another. */
static void *spawn_into_other(void *arg)
{
    tp_pool *other = arg;
    int local = 0;
    tp_task *t = tp_spawn(other, use_8k, &local);
    return (void *)(intptr_t)(t == NULL && errno == EINVAL);
}

START_TEST(test_two_pools)
{
    tp_pool *a = test_pool(1), *b = test_pool(2);
    void *r = NULL;
    ck_assert_int_eq(tp_join(tp_spawn(a, spawn_into_other, b), &r, -1), 0);
    ck_assert_ptr_eq(r, (void *)1);
    tp_task *t = tp_spawn(b, use_8k, NULL);
    ck_assert_int_eq(tp_join(t, &r, -1), 0);
    ck_assert_int_eq(tp_pool_destroy(a), 0);
    ck_assert_int_eq(tp_pool_destroy(b), 0);
}
END_TEST

static tp_chan *pp_a, *pp_b;

static void *ponger(void *arg)
{
    int v;
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        tp_chan_recv(pp_a, &v, -1);
        v++;
        tp_chan_send(pp_b, &v, -1);
    }
    return NULL;
}

START_TEST(test_stats_count_switches_and_copies)
{
    tp_pool *p = test_pool(1);
    pp_a = tp_chan_create(sizeof(int), 0);
    pp_b = tp_chan_create(sizeof(int), 0);
    tp_task *t = tp_spawn(p, ponger, NULL);
    int v = 0;
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(tp_chan_send(pp_a, &v, -1), 0);
        ck_assert_int_eq(tp_chan_recv(pp_b, &v, -1), 0);
    }
    ck_assert_int_eq(v, 1000);
    ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    tp_stats st;
    tp_pool_stats(p, &st);
    ck_assert_uint_gt(st.switches, 0);     /* it started and finished, at the least */
    ck_assert_uint_eq(st.copied_bytes, 0); /* one task alone never needs a copy */
    ck_assert_uint_eq(st.tasks_spawned, 1);
    tp_chan_destroy(pp_a);
    tp_chan_destroy(pp_b);
    tp_pool_destroy(p);
}
END_TEST

/* Tasks that finish without being joined or detached are freed by tp_pool_destroy (the
   ASan build's LeakSanitizer fails this test if they are not). */
START_TEST(test_destroy_frees_unreleased)
{
    tp_pool *p = test_pool(2);
    for (int i = 0; i < 100; i++)
        ck_assert_ptr_nonnull(tp_spawn(p, use_8k, NULL));
    tp_task *j = tp_spawn(p, use_8k, NULL);
    ck_assert_int_eq(tp_pool_wait(p), 0);
    ck_assert_int_eq(tp_join(j, NULL, -1), 0); /* one released normally, among them */
    tp_stats st;
    tp_pool_stats(p, &st);
    ck_assert_uint_eq(st.tasks_live, 0);
    ck_assert_int_eq(tp_pool_destroy(p), 0);
}
END_TEST

/* Out of file descriptors is EMFILE, not ENOMEM, and nothing is left behind. */
START_TEST(test_create_out_of_descriptors)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int fd;
    while ((fd = dup(0)) >= 0 && fd < 64) /* make sure the low descriptors are used */
        ;
    struct rlimit low = {.rlim_cur = (rlim_t)(fd < 0 ? 64 : fd + 1), .rlim_max = rl.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (dup(0) >= 0) /* use up every descriptor left */
        ;
    tp_pool_attr a = {.workers = 2, .stack_size = 0};
    ck_assert_err(tp_pool_create(&a), EMFILE);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    tp_pool *p = tp_pool_create(&a); /* and with descriptors to spare, it works */
    ck_assert_ptr_nonnull(p);
    tp_pool_destroy(p);
}
END_TEST

/* The process's address space in use, in bytes (VmSize), or 0. */
static size_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

/* ponger's partner, as a task: v comes back from ponger one higher each round. */
static void *pinger(void *arg)
{
    (void)arg;
    int v = 0;
    for (int i = 0; i < 1000; i++)
        if (tp_chan_send(pp_a, &v, -1) != 0 || tp_chan_recv(pp_b, &v, -1) != 0)
            return (void *)1;
    return (void *)(intptr_t)(v == 1000 ? 0 : 2);
}

/* Short of address space (RLIMIT_AS), a worker gets fewer stacks, and at the last one
   of just the size asked, as before workers had several: a pool that fits with one
   stack per worker is still created, and its tasks, now sharing that stack, run. */
START_TEST(test_create_short_of_address_space)
{
#if TP_ASAN || TP_TSAN
    printf("pool: address-space test skipped under a sanitizer runtime (its shadow "
           "memory is address space too)\n");
    return;
#endif
#if HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        printf("pool: address-space test skipped under valgrind\n");
        return;
    }
#endif
    size_t in_use = vm_size();
    ck_assert_uint_gt(in_use, 0);
    /* Room for one 64 MiB stack and the worker thread's own, not for one 128 MiB slot
       (let alone sixteen). */
    struct rlimit old, rl;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &old), 0);
    rl = old;
    rl.rlim_cur = (rlim_t)in_use + ((rlim_t)100 << 20);
    ck_assert(old.rlim_max == RLIM_INFINITY || rl.rlim_cur <= old.rlim_max);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
    tp_pool_attr a = {.workers = 1, .stack_size = 64u << 20};
    tp_pool *p = tp_pool_create(&a);
    ck_assert_msg(p != NULL, "tp_pool_create: errno %d", errno);
    ck_assert_ptr_nonnull(pp_a = tp_chan_create(sizeof(int), 0));
    ck_assert_ptr_nonnull(pp_b = tp_chan_create(sizeof(int), 0));
    tp_task *x = tp_spawn(p, pinger, NULL), *y = tp_spawn(p, ponger, NULL);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    void *rx = (void *)-1, *ry = (void *)-1;
    ck_assert_int_eq(tp_join(x, &rx, -1), 0);
    ck_assert_int_eq(tp_join(y, &ry, -1), 0);
    ck_assert_ptr_null(rx);
    ck_assert_ptr_null(ry);
    tp_stats st;
    tp_pool_stats(p, &st);
    ck_assert_uint_gt(st.copied_bytes, 0); /* one stack for both: they took turns on it */
    tp_chan_destroy(pp_a);
    tp_chan_destroy(pp_b);
    tp_pool_destroy(p);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &old), 0);
}
END_TEST

START_TEST(test_version)
{
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", TP_VERSION_MAJOR, TP_VERSION_MINOR, TP_VERSION_PATCH);
    ck_assert_str_eq(tp_version(), v);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_create_defaults);
    tcase_add_test(tc, test_create_bad_attr);
    tcase_add_test(tc, test_custom_stack_size);
    tcase_add_test(tc, test_wait_counts_every_task);
    tcase_add_test(tc, test_wait_from_task_refused);
    tcase_add_test(tc, test_destroy_waits_for_parked);
    tcase_add_test(tc, test_two_pools);
    tcase_add_test(tc, test_stats_count_switches_and_copies);
    tcase_add_test(tc, test_destroy_frees_unreleased);
    tcase_add_test(tc, test_create_out_of_descriptors);
    tcase_add_test(tc, test_create_short_of_address_space);
    tcase_add_test(tc, test_version);
    suite_add_tcase(s, tc);
    return test_run(s);
}
