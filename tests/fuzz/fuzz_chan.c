/* fuzz_chan.c -- libFuzzer harness: channel and select operation scripts decoded from
 * the fuzz input, run on real channels and on the reference model of
 * tests/chan_model.h, compared step by step (see that file for why the model is exact).
 *
 * Input layout:
 *   byte 0       mode: bit 0 = the script runs in a task (else in the fuzzer's thread),
 *                bits 1-2 = partner (0 none, 1 task, 2 plain thread, 3 none)
 *   byte 1       channel count - 1 (mod 4)
 *   bytes 2-5    each channel's element size index (bits 3-7) and capacity (bits 0-2)
 *   then pairs   op byte (low 5 bits: operation, through op_table; high 3 bits:
 *                channel), argument byte (renew parameters, select shape, value bits)
 * A disagreement with the model, a wrong errno, corrupted data, or anything left in the
 * pool afterwards (live, parked or saved tasks, saved capacity) aborts, so libFuzzer
 * keeps the input as a crash.  ASan, UBSan and LeakSanitizer watch everything else.
 *
 * Build and run: tests/fuzz/run.sh SECONDS (or `make fuzz`, `make fuzz-short`).
 */
#include "../chan_model.h"

#include <stdlib.h>

#define MAX_STEPS 256

static tp_pool *pool;

/* 32 slots, so that one op byte maps to an operation with sensible weights: mostly
   deadline-0 traffic and pairing, a little of what costs milliseconds (timed waits). */
static const uint8_t op_table[32] = {
    M_SEND,   M_SEND,   M_SEND,   M_SEND,     M_SEND,         M_RECV,         M_RECV,
    M_RECV,   M_RECV,   M_RECV,   M_CLOSE,    M_RENEW,        M_RENEW,        M_BAD_DEADLINE,
    M_P_SEND, M_P_SEND, M_P_SEND, M_P_RECV,   M_P_RECV,       M_P_RECV,       M_P_CLOSE,
    M_P_CLOSE_SEND,     M_SELECT, M_SELECT,   M_SELECT,       M_SELECT,       M_P_SELECT,
    M_P_SELECT, M_P_SELECT, M_SEND_TIMED, M_RECV_TIMED, M_SELECT_TIMED,
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    tp_pool_attr a = {.workers = 2, .stack_size = 0};
    pool = tp_pool_create(&a);
    if (!pool) {
        fprintf(stderr, "fuzz_chan: tp_pool_create failed: errno %d\n", errno);
        abort();
    }
    return 0;
}

struct job {
    struct model_run run;
    const uint8_t *data;
    size_t size;
    int failed;
};

static void *run_job(void *arg)
{
    struct job *j = arg;
    struct model_run *r = &j->run;
    j->failed = 1;
    if (model_begin(r, 1 + j->data[1] % MODEL_MAXCH, j->data + 2) < 0) {
        model_end(r);
        return NULL;
    }
    const uint8_t *p = j->data + 2 + MODEL_MAXCH;
    size_t left = j->size - 2 - MODEL_MAXCH;
    for (r->steps = 0; left >= 2 && r->steps < MAX_STEPS; r->steps++, p += 2, left -= 2) {
        struct model_step s;
        s.op = op_table[p[0] & 31];
        s.ch = (uint8_t)(p[0] >> 5);
        s.arg = p[1];
        s.v = ((uint64_t)r->steps << 8) | p[1]; /* distinct per step */
        if (model_exec(r, &s) < 0) {
            model_end(r);
            return NULL;
        }
    }
    j->failed = model_end(r) < 0;
    return NULL;
}

static void die(const char *what, const struct job *j)
{
    fprintf(stderr, "fuzz_chan: %s: %s\n", what, j->run.msg[0] ? j->run.msg : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 + MODEL_MAXCH)
        return 0;
    struct job *j = calloc(1, sizeof *j); /* shared with a task: never on a stack */
    if (!j)
        return 0;
    j->data = data;
    j->size = size;
    j->run.pool = pool;
    j->run.partner_kind = (data[0] >> 1) & 3;
    if (j->run.partner_kind > PARTNER_THREAD)
        j->run.partner_kind = PARTNER_NONE;
    if (data[0] & 1) {
        tp_task *t = tp_spawn(pool, run_job, j);
        if (!t || tp_join(t, NULL, -1) != 0)
            die("could not run the script in a task", j);
    } else {
        run_job(j);
    }
    if (j->failed)
        die("mismatch with the model", j);
    /* Nothing may be left behind in the pool. */
    tp_stats st;
    if (tp_pool_wait(pool) != 0 || tp_pool_stats(pool, &st) != 0)
        die("tp_pool_wait/stats", j);
    if (st.tasks_live || st.tasks_parked || st.saved_bytes || st.saved_capacity) {
        fprintf(stderr, "fuzz_chan: pool not empty: live %llu parked %llu saved %llu cap %llu\n",
                (unsigned long long)st.tasks_live, (unsigned long long)st.tasks_parked,
                (unsigned long long)st.saved_bytes, (unsigned long long)st.saved_capacity);
        abort();
    }
    free(j);
    return 0;
}
