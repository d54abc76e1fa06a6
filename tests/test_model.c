/* test_model.c -- model-based test of channels: random scripts of send, recv, select,
 * close, destroy/recreate, deadline 0, short deadlines and bad deadlines, run on real
 * channels and on the reference model of tests/chan_model.h, compared step by step.
 *
 * Six modes: the script runs in a plain thread or in a task, alone or with a partner
 * (a task or a plain thread) for the rendezvous and close-while-blocked steps.
 *
 * Seeds: each run starts from a fresh base seed (printed), so CI explores new scripts;
 * a mismatch prints the seed, the mode and the step, and
 *     MODEL_SEED=<seed> [MODEL_MODE=<mode>] tests/test_model
 * replays exactly that script.  MODEL_SEEDS=<n> sets the scripts per mode,
 * MODEL_STEPS=<n> their length.
 */
#include "tp_test.h"
#include "chan_model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct mode {
    const char *name;
    bool in_task;     /* the script runs in a task (else in the test's plain thread) */
    int partner_kind; /* PARTNER_... */
};

static const struct mode modes[] = {
    {"thread", false, PARTNER_NONE},
    {"task", true, PARTNER_NONE},
    {"thread+partner-task", false, PARTNER_TASK},
    {"task+partner-task", true, PARTNER_TASK},
    {"thread+partner-thread", false, PARTNER_THREAD},
    {"task+partner-thread", true, PARTNER_THREAD},
};
#define NMODES (sizeof modes / sizeof modes[0])

static unsigned long env_ul(const char *name, unsigned long dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoul(s, NULL, 0) : dflt;
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    return model_mix(*s);
}

/* Operation weights: mostly deadline-0 traffic, some pairing, a few rare events. */
static const unsigned op_weight[M_NOPS] = {
    [M_SEND] = 26,      [M_RECV] = 26,      [M_CLOSE] = 2,       [M_RENEW] = 3,
    [M_SEND_TIMED] = 1, [M_RECV_TIMED] = 1, [M_BAD_DEADLINE] = 2, [M_P_SEND] = 12,
    [M_P_RECV] = 12,    [M_P_CLOSE] = 2,    [M_P_CLOSE_SEND] = 2, [M_SELECT] = 10,
    [M_SELECT_TIMED] = 1, [M_P_SELECT] = 8,
};

static struct model_step gen_step(uint64_t *rng, unsigned long i)
{
    unsigned total = 0;
    for (int k = 0; k < M_NOPS; k++)
        total += op_weight[k];
    uint64_t x = rng_next(rng);
    unsigned pick = (unsigned)(x % total);
    struct model_step s = {.op = 0};
    while (pick >= op_weight[s.op])
        pick -= op_weight[s.op++];
    s.ch = (uint8_t)(x >> 32);
    s.arg = (uint8_t)(x >> 40);
    s.v = ((uint64_t)i << 20) ^ (x >> 48); /* distinct per step */
    return s;
}

struct script {
    struct model_run run;
    uint64_t seed;
    unsigned long nsteps;
    int failed;
};

/* Runs in a task or in the test thread. */
static void *run_script(void *arg)
{
    struct script *sc = arg;
    struct model_run *r = &sc->run;
    uint64_t rng = sc->seed;
    uint8_t args[MODEL_MAXCH];
    unsigned nch = 1 + (unsigned)(rng_next(&rng) % MODEL_MAXCH);
    for (unsigned i = 0; i < MODEL_MAXCH; i++)
        args[i] = (uint8_t)rng_next(&rng);
    sc->failed = 1;
    if (model_begin(r, nch, args) < 0) {
        model_end(r);
        return NULL;
    }
    for (r->steps = 0; r->steps < sc->nsteps; r->steps++) {
        struct model_step s = gen_step(&rng, r->steps);
        if (model_exec(r, &s) < 0) {
            model_end(r);
            return NULL;
        }
    }
    sc->failed = model_end(r) < 0;
    return NULL;
}

static unsigned long total_steps, total_scripts, op_totals[M_NOPS];

static void run_one(tp_pool *pool, const struct mode *m, int mode_index, uint64_t seed,
                    unsigned long nsteps)
{
    struct script *sc = calloc(1, sizeof *sc); /* never on a task's stack */
    ck_assert_ptr_nonnull(sc);
    sc->seed = seed;
    sc->nsteps = nsteps;
    sc->run.pool = pool;
    sc->run.partner_kind = m->partner_kind;
    if (m->in_task) {
        tp_task *t = tp_spawn(pool, run_script, sc);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(tp_join(t, NULL, -1), 0);
    } else {
        run_script(sc);
    }
    if (sc->failed) {
        fprintf(stderr,
                "model mismatch: mode %s, seed %" PRIu64 ": %s\n"
                "  replay: MODEL_SEED=%" PRIu64 " MODEL_MODE=%d MODEL_STEPS=%lu tests/test_model\n",
                m->name, seed, sc->run.msg, seed, mode_index, nsteps);
        ck_abort_msg("model mismatch, mode %s seed %" PRIu64 ": %s", m->name, seed,
                     sc->run.msg);
    }
    total_steps += sc->run.steps;
    total_scripts++;
    for (int k = 0; k < M_NOPS; k++)
        op_totals[k] += sc->run.ops[k];
    free(sc);
}

START_TEST(test_model_scripts)
{
    const char *fixed = getenv("MODEL_SEED");
    unsigned long nseeds = env_ul("MODEL_SEEDS", 40);
    unsigned long nsteps = env_ul("MODEL_STEPS", 300);
    long only = getenv("MODEL_MODE") ? (long)env_ul("MODEL_MODE", 0) : -1;
    uint64_t base = fixed ? strtoull(fixed, NULL, 0)
                          : model_mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    if (fixed)
        nseeds = 1;
    printf("model: base seed %" PRIu64 ", %lu scripts x %lu steps per mode\n", base, nseeds,
           nsteps);
    fflush(stdout);
    tp_pool *pool = test_pool(2);
    for (unsigned mi = 0; mi < NMODES; mi++) {
        if (only >= 0 && (unsigned long)only != mi)
            continue;
        for (unsigned long k = 0; k < nseeds; k++)
            run_one(pool, &modes[mi], (int)mi, base + k, nsteps);
    }
    ck_assert_int_eq(tp_pool_wait(pool), 0);
    tp_stats st;
    ck_assert_int_eq(tp_pool_stats(pool, &st), 0);
    ck_assert_uint_eq(st.tasks_live, 0);
    ck_assert_uint_eq(st.tasks_parked, 0);
    ck_assert_uint_eq(st.saved_bytes, 0);
    ck_assert_uint_eq(st.saved_capacity, 0);
    ck_assert_int_eq(tp_pool_destroy(pool), 0);
    printf("model: %lu scripts, %lu steps agreed with the model:", total_scripts, total_steps);
    for (int k = 0; k < M_NOPS; k++)
        printf(" %s=%lu", model_op_names[k], op_totals[k]);
    printf("\n");
    ck_assert_uint_gt(total_steps, 0);
}
END_TEST

/* The model itself, on fixed cases, so a wrong model cannot make everything agree. */
START_TEST(test_model_self_check)
{
    struct model_chan c = {.esz = 8, .cap = 2};
    uint64_t v = 0;
    ck_assert_int_eq(model_send(&c, 1), 0);
    ck_assert_int_eq(model_send(&c, 2), 0);
    ck_assert_int_eq(model_send(&c, 3), ETIMEDOUT);
    ck_assert_int_eq(model_recv(&c, &v), 0);
    ck_assert_uint_eq(v, 1);
    c.closed = true;
    ck_assert_int_eq(model_send(&c, 4), EPIPE);
    ck_assert_int_eq(model_recv(&c, &v), 0);
    ck_assert_uint_eq(v, 2);
    ck_assert_int_eq(model_recv(&c, &v), EPIPE);
    struct model_chan u = {.esz = 8, .cap = 0};
    ck_assert_int_eq(model_send(&u, 1), ETIMEDOUT);
    ck_assert_int_eq(model_recv(&u, &v), ETIMEDOUT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("channels");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_model_self_check);
    tcase_add_test(tc, test_model_scripts);
    suite_add_tcase(s, tc);
    return test_run(s);
}
