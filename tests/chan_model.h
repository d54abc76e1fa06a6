/* chan_model.h -- a reference model of the documented channel semantics, and an
 * executor that runs the same operations on real threadplex channels and compares
 * every outcome with the model's.  Shared by tests/test_model.c (random scripts from a
 * seed) and tests/fuzz/fuzz_chan.c (scripts decoded from fuzz input), so it uses no
 * test framework: a mismatch is described in run->msg and reported by the caller.
 *
 * The model is exact because every operation the script issues has exactly one
 * documented outcome:
 *  - operations of the main party use deadline 0 (or a deadline a few milliseconds away
 *    when no other party could complete them): FIFO, capacity, "close, then drain, then
 *    EPIPE", "send on closed is EPIPE", "ETIMEDOUT when it cannot complete now";
 *  - operations paired with a partner (a task or a plain thread) use deadline -1 on both
 *    sides and are chosen so that the result does not depend on which side arrives
 *    first: partner sends while main receives, partner receives while main sends,
 *    partner closes while main receives (or sends into a full channel).
 * The partner waits for commands on a control channel and answers on a reply channel,
 * so the control traffic is itself channel traffic between two parties.
 */
#ifndef TP_CHAN_MODEL_H
#define TP_CHAN_MODEL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <threadplex.h>

#define MODEL_MAXCH 4     /* channels in one script */
#define MODEL_MAXCAP 4    /* largest buffered capacity */
#define MODEL_MAXESZ 64   /* largest element size */
#define MODEL_MAXCASES 4  /* cases in one select */

/* Element sizes tried: tiny, word, the inline limit (16), just past it (heap path), big. */
static const size_t model_sizes[] = {1, 3, 8, 16, 17, 40, MODEL_MAXESZ};
#define MODEL_NSIZES (sizeof model_sizes / sizeof model_sizes[0])

enum model_op {
    M_SEND,         /* main: send, deadline 0 */
    M_RECV,         /* main: recv, deadline 0 */
    M_CLOSE,        /* main: close */
    M_RENEW,        /* main: destroy the channel, create a fresh one (new size, cap) */
    M_SEND_TIMED,   /* main: send, deadline a few ms ahead */
    M_RECV_TIMED,   /* main: recv, deadline a few ms ahead */
    M_BAD_DEADLINE, /* main: send or recv with a deadline below -1: EINVAL */
    M_P_SEND,       /* partner sends (-1), main receives (-1) */
    M_P_RECV,       /* partner receives (-1), main sends (-1) */
    M_P_CLOSE,      /* partner closes, main receives (-1) */
    M_P_CLOSE_SEND, /* partner closes, main sends (-1) into a full channel */
    M_SELECT,       /* main: tp_select over 1-4 cases, deadline 0 */
    M_SELECT_TIMED, /* main: the same, deadline a few ms ahead */
    M_P_SELECT,     /* partner sends or receives (-1); main selects (-1) over the
                       matching case and cases that cannot become ready */
    M_NOPS
};

static const char *const model_op_names[M_NOPS] = {
    "send", "recv", "close", "renew", "send(timed)", "recv(timed)", "bad-deadline",
    "partner-send/recv", "partner-recv/send", "partner-close/recv", "partner-close/send",
    "select", "select(timed)", "partner/select"};

struct model_step {
    uint8_t op;   /* enum model_op */
    uint8_t ch;   /* channel index (mod the channel count) */
    uint8_t arg;  /* M_RENEW: size index and capacity; M_BAD_DEADLINE: which call */
    uint64_t v;   /* value sent */
};

struct model_chan {
    tp_chan *real;
    size_t esz, cap;
    bool closed;
    size_t head, count;
    uint64_t ring[MODEL_MAXCAP + 1]; /* the buffered values, oldest at head */
};

enum { PARTNER_NONE, PARTNER_TASK, PARTNER_THREAD };

/* A command to the partner, and its answer. */
struct model_cmd {
    int op;         /* M_P_..., or -1: quit */
    tp_chan *ch;
    size_t esz;
    unsigned char val[MODEL_MAXESZ];
};

struct model_reply {
    int rc, err;
    unsigned char val[MODEL_MAXESZ];
};

struct model_run {
    tp_pool *pool;
    int partner_kind;          /* PARTNER_... */
    unsigned nch;
    struct model_chan ch[MODEL_MAXCH];
    tp_chan *ctl, *rep;        /* to and from the partner */
    tp_task *ptask;
    pthread_t pthread;
    unsigned long steps;       /* steps executed so far */
    unsigned long ops[M_NOPS]; /* how often each operation ran */
    char msg[512];             /* the mismatch, when a step fails */
};

/* splitmix64: the value generator and the element encoder. */
static inline uint64_t model_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The bytes of value v as an element of esz bytes: every byte depends on v. */
static inline void model_encode(uint64_t v, size_t esz, unsigned char *out)
{
    uint64_t x = 0;
    for (size_t i = 0; i < esz; i++) {
        if (i % 8 == 0)
            x = model_mix(v * 131 + i);
        out[i] = (unsigned char)x;
        x >>= 8;
    }
}

/* ----------------------------------------------------------------- the model ---- */

static inline void mq_push(struct model_chan *c, uint64_t v)
{
    c->ring[(c->head + c->count) % (MODEL_MAXCAP + 1)] = v;
    c->count++;
}

static inline uint64_t mq_pop(struct model_chan *c)
{
    uint64_t v = c->ring[c->head];
    c->head = (c->head + 1) % (MODEL_MAXCAP + 1);
    c->count--;
    return v;
}

/* Expected outcome of one party's operation: err 0 (with *v for a receive) or errno. */
static inline int model_send(struct model_chan *c, uint64_t v)
{
    if (c->closed)
        return EPIPE;
    if (c->count >= c->cap)
        return ETIMEDOUT; /* nobody is receiving in a single-party step */
    mq_push(c, v);
    return 0;
}

static inline int model_recv(struct model_chan *c, uint64_t *v)
{
    if (c->count) {
        *v = mq_pop(c);
        return 0;
    }
    return c->closed ? EPIPE : ETIMEDOUT;
}

/* ------------------------------------------------------------- the partner ---- */

static inline void *model_partner(void *arg)
{
    struct model_run *r = arg;
    struct model_cmd cmd;
    for (;;) {
        if (tp_chan_recv(r->ctl, &cmd, -1) != 0 || cmd.op < 0)
            return NULL;
        struct model_reply rep;
        memset(&rep, 0, sizeof rep);
        errno = 0;
        switch (cmd.op) {
        case M_P_SEND:
            rep.rc = tp_chan_send(cmd.ch, cmd.val, -1);
            break;
        case M_P_RECV:
            rep.rc = tp_chan_recv(cmd.ch, rep.val, -1);
            break;
        default: /* M_P_CLOSE, M_P_CLOSE_SEND */
            rep.rc = tp_chan_close(cmd.ch);
            break;
        }
        rep.err = rep.rc ? errno : 0;
        if (tp_chan_send(r->rep, &rep, -1) != 0)
            return NULL;
    }
}

/* ---------------------------------------------------------------- executor ---- */

static inline int model_fail(struct model_run *r, const struct model_step *s, const char *what,
                             int rc, int err, int want)
{
    snprintf(r->msg, sizeof r->msg,
             "step %lu: %s on channel %u (esz %zu, cap %zu, buffered %zu, %s): %s: "
             "got rc %d errno %d (%s), model says %d (%s)",
             r->steps, model_op_names[s->op], (unsigned)(s->ch % r->nch),
             r->ch[s->ch % r->nch].esz, r->ch[s->ch % r->nch].cap,
             r->ch[s->ch % r->nch].count, r->ch[s->ch % r->nch].closed ? "closed" : "open",
             what, rc, err, err ? strerror(err) : "ok", want, want ? strerror(want) : "ok");
    return -1;
}

/* Compare a real result (rc, errno) and received bytes with the model's. */
static inline int model_check(struct model_run *r, const struct model_step *s, const char *what,
                              int rc, int err, int want, const unsigned char *got,
                              uint64_t wantv, size_t esz)
{
    if (want == 0 && rc != 0)
        return model_fail(r, s, what, rc, err, want);
    if (want != 0 && (rc != -1 || err != want))
        return model_fail(r, s, what, rc, rc ? err : 0, want);
    if (want == 0 && got) {
        unsigned char exp[MODEL_MAXESZ];
        model_encode(wantv, esz, exp);
        if (memcmp(exp, got, esz) != 0) {
            snprintf(r->msg, sizeof r->msg,
                     "step %lu: %s on channel %u: %s: received bytes differ from value %llu "
                     "(FIFO order or data corrupted)",
                     r->steps, model_op_names[s->op], (unsigned)(s->ch % r->nch), what,
                     (unsigned long long)wantv);
            return -1;
        }
    }
    return 0;
}

static inline int model_chan_open(struct model_run *r, unsigned i, uint8_t arg)
{
    struct model_chan *c = &r->ch[i];
    memset(c, 0, sizeof *c);
    c->esz = model_sizes[(arg >> 3) % MODEL_NSIZES];
    c->cap = (arg & 7) % (MODEL_MAXCAP + 1);
    c->real = tp_chan_create(c->esz, c->cap);
    if (!c->real) {
        snprintf(r->msg, sizeof r->msg, "tp_chan_create(%zu, %zu): errno %d", c->esz, c->cap,
                 errno);
        return -1;
    }
    return 0;
}

/* A step with the partner: send it the command, do main's half, collect its answer. */
static inline int model_paired(struct model_run *r, const struct model_step *s)
{
    struct model_chan *c = &r->ch[s->ch % r->nch];
    struct model_cmd cmd;
    unsigned char buf[MODEL_MAXESZ];
    uint64_t mv = 0, pv = 0;
    int mwant, pwant, rc, err;
    memset(&cmd, 0, sizeof cmd);
    cmd.op = s->op;
    cmd.ch = c->real;
    cmd.esz = c->esz;
    /* The model of the pair, whichever side arrives first. */
    switch (s->op) {
    case M_P_SEND: /* partner sends v, main receives */
        model_encode(s->v, c->esz, cmd.val);
        pwant = c->closed ? EPIPE : 0;
        if (!pwant)
            mq_push(c, s->v);
        mwant = model_recv(c, &mv);
        break;
    case M_P_RECV: /* main sends v, partner receives */
        mwant = c->closed ? EPIPE : 0;
        if (!mwant)
            mq_push(c, s->v);
        pwant = model_recv(c, &pv);
        break;
    default: /* partner closes; main receives, or sends into a full channel */
        pwant = c->closed ? EPIPE : 0;
        c->closed = true;
        if (s->op == M_P_CLOSE)
            mwant = model_recv(c, &mv);
        else
            mwant = EPIPE;
        break;
    }
    if (tp_chan_send(r->ctl, &cmd, -1) != 0) {
        snprintf(r->msg, sizeof r->msg, "step %lu: control send failed: errno %d", r->steps,
                 errno);
        return -1;
    }
    errno = 0;
    if (s->op == M_P_RECV || s->op == M_P_CLOSE_SEND) {
        model_encode(s->v, c->esz, buf);
        rc = tp_chan_send(c->real, buf, -1);
    } else {
        rc = tp_chan_recv(c->real, buf, -1);
    }
    err = rc ? errno : 0;
    struct model_reply rep;
    if (tp_chan_recv(r->rep, &rep, -1) != 0) {
        snprintf(r->msg, sizeof r->msg, "step %lu: reply recv failed: errno %d", r->steps,
                 errno);
        return -1;
    }
    bool main_recv = s->op == M_P_SEND || s->op == M_P_CLOSE;
    if (model_check(r, s, "main", rc, err, mwant, main_recv ? buf : NULL, mv, c->esz) < 0)
        return -1;
    return model_check(r, s, "partner", rep.rc, rep.err, pwant,
                       s->op == M_P_RECV ? rep.val : NULL, pv, c->esz);
}

/* ------------------------------------------------------------------ select ---- */

/* Whether a case could complete at once (with a value, or with EPIPE) when only the
   main party acts. */
static inline bool model_ready(const struct model_chan *c, int op)
{
    if (c->closed)
        return true;
    return op == TP_SEND ? c->count < c->cap : c->count > 0;
}

struct model_sel {
    size_t n;
    unsigned ch[MODEL_MAXCASES];
    tp_case cases[MODEL_MAXCASES];
    unsigned char buf[MODEL_MAXCASES][MODEL_MAXESZ];
    uint64_t sendv[MODEL_MAXCASES];
};

#define MODEL_ERR_UNTOUCHED 0x5e1ec7 /* err of a case tp_select must not write */

static inline void model_sel_add(struct model_run *r, struct model_sel *m, unsigned ch,
                                 int op, uint64_t v)
{
    size_t i = m->n++;
    m->ch[i] = ch;
    m->sendv[i] = v;
    m->cases[i].ch = r->ch[ch].real;
    m->cases[i].op = op;
    m->cases[i].elem = m->buf[i];
    m->cases[i].err = MODEL_ERR_UNTOUCHED;
    if (op == TP_SEND)
        model_encode(v, r->ch[ch].esz, m->buf[i]);
}

/* Check tp_select's answer: the case it completed could complete, its effect matches
   the model's (then applied), no other case's err was written. */
static inline int model_sel_check(struct model_run *r, const struct model_step *s,
                                  struct model_sel *m, int rc, int err, bool any_ready)
{
    if (!any_ready) {
        if (rc != -1 || err != ETIMEDOUT)
            return model_fail(r, s, "select with nothing ready", rc, err, ETIMEDOUT);
    } else if (rc < 0 || (size_t)rc >= m->n) {
        return model_fail(r, s, "select with a ready case", rc, err, 0);
    }
    for (size_t i = 0; i < m->n; i++) {
        if ((int)i != rc && m->cases[i].err != MODEL_ERR_UNTOUCHED) {
            snprintf(r->msg, sizeof r->msg,
                     "step %lu: %s: case %zu's err was written (%d) though case %d completed",
                     r->steps, model_op_names[s->op], i, m->cases[i].err, rc);
            return -1;
        }
    }
    if (rc < 0)
        return 0;
    struct model_chan *c = &r->ch[m->ch[rc]];
    if (!model_ready(c, m->cases[rc].op) && s->op != M_P_SELECT) {
        snprintf(r->msg, sizeof r->msg, "step %lu: %s completed case %d, which was not ready",
                 r->steps, model_op_names[s->op], rc);
        return -1;
    }
    uint64_t v = 0;
    int want;
    if (m->cases[rc].op == TP_SEND) {
        want = c->closed ? EPIPE : 0;
        if (!want)
            mq_push(c, m->sendv[rc]);
        return model_check(r, s, "selected send", m->cases[rc].err ? -1 : 0, m->cases[rc].err,
                           want, NULL, 0, c->esz);
    }
    want = model_recv(c, &v);
    return model_check(r, s, "selected recv", m->cases[rc].err ? -1 : 0, m->cases[rc].err,
                       want, m->buf[rc], v, c->esz);
}

/* A select of main alone: 1-4 random cases, deadline 0 or a few ms ahead. */
static inline int model_select(struct model_run *r, const struct model_step *s)
{
    struct model_sel m;
    uint64_t bits = model_mix(s->v ^ 0x5e1ec7);
    size_t n = 1 + (size_t)(bits % MODEL_MAXCASES);
    bool any = false;
    m.n = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned ch = (unsigned)((bits >> (8 + 4 * i)) % r->nch);
        int op = (bits >> (40 + i)) & 1 ? TP_SEND : TP_RECV;
        model_sel_add(r, &m, ch, op, s->v * MODEL_MAXCASES + i);
        any |= model_ready(&r->ch[ch], op);
    }
    int64_t dl = s->op == M_SELECT ? 0 : tp_now() + 1 + (int64_t)(s->v & 1);
    errno = 0;
    int rc = tp_select(m.cases, m.n, dl);
    return model_sel_check(r, s, &m, rc, rc < 0 ? errno : 0, any);
}

/* Main selects (-1) over the case the partner will match (case 0) and cases on other
   channels that cannot become ready; the partner sends or receives with -1.  Whichever
   arrives first, case 0 completes and the values go as the model says. */
static inline int model_select_paired(struct model_run *r, const struct model_step *s)
{
    unsigned c0 = s->ch % r->nch;
    struct model_chan *c = &r->ch[c0];
    int op = s->arg & 1 ? TP_SEND : TP_RECV; /* main's side */
    struct model_sel m;
    m.n = 0;
    model_sel_add(r, &m, c0, op, s->v);
    uint64_t bits = model_mix(s->v ^ 0xa11);
    for (unsigned i = 0; i < 3 && r->nch > 1; i++) {
        unsigned ch = (unsigned)((bits >> (4 * i)) % r->nch);
        struct model_chan *o = &r->ch[ch];
        if (ch == c0 || o->closed)
            continue;
        if (o->count == 0)
            model_sel_add(r, &m, ch, TP_RECV, 0);
        else if (o->count == o->cap)
            model_sel_add(r, &m, ch, TP_SEND, s->v + 1000 + i);
    }
    struct model_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.op = op == TP_SEND ? M_P_RECV : M_P_SEND;
    cmd.ch = c->real;
    cmd.esz = c->esz;
    uint64_t partner_v = s->v + 77;
    if (cmd.op == M_P_SEND)
        model_encode(partner_v, c->esz, cmd.val);
    if (tp_chan_send(r->ctl, &cmd, -1) != 0) {
        snprintf(r->msg, sizeof r->msg, "step %lu: control send failed: errno %d", r->steps,
                 errno);
        return -1;
    }
    errno = 0;
    int rc = tp_select(m.cases, m.n, -1);
    int err = rc < 0 ? errno : 0;
    struct model_reply rep;
    if (tp_chan_recv(r->rep, &rep, -1) != 0) {
        snprintf(r->msg, sizeof r->msg, "step %lu: reply recv failed: errno %d", r->steps,
                 errno);
        return -1;
    }
    if (rc != 0)
        return model_fail(r, s, "select (case 0 is the only one that can complete)", rc, err, 0);
    if (op == TP_RECV) { /* the partner's send first, then main's receive takes the front */
        int pwant = c->closed ? EPIPE : 0;
        if (!pwant)
            mq_push(c, partner_v);
        if (model_check(r, s, "partner", rep.rc, rep.err, pwant, NULL, 0, c->esz) < 0)
            return -1;
        return model_sel_check(r, s, &m, rc, err, true);
    }
    if (model_sel_check(r, s, &m, rc, err, true) < 0) /* main's send, then the receive */
        return -1;
    uint64_t pv = 0;
    int pwant = model_recv(c, &pv);
    return model_check(r, s, "partner", rep.rc, rep.err, pwant, rep.val, pv, c->esz);
}

/* Run one step on the real channels and on the model; 0 when they agree. */
static inline int model_exec(struct model_run *r, const struct model_step *in)
{
    struct model_step s = *in;
    struct model_chan *c = &r->ch[s.ch % r->nch];
    unsigned char buf[MODEL_MAXESZ];
    uint64_t v = 0;
    int want, rc, err;
    /* Steps the current state cannot run deterministically degrade to a receive. */
    if (r->partner_kind == PARTNER_NONE) {
        if (s.op == M_P_SELECT)
            s.op = M_SELECT;
        else if (s.op >= M_P_SEND && s.op <= M_P_CLOSE_SEND)
            s.op = s.op == M_P_CLOSE ? M_CLOSE : M_RECV;
    }
    if (s.op == M_P_CLOSE_SEND && !c->closed && c->count < c->cap)
        s.op = M_P_CLOSE; /* main's send could complete before the close */
    r->ops[s.op]++;
    errno = 0;
    switch (s.op) {
    case M_SEND:
    case M_SEND_TIMED:
        model_encode(s.v, c->esz, buf);
        want = model_send(c, s.v);
        rc = tp_chan_send(c->real, buf, s.op == M_SEND ? 0 : tp_now() + 1 + (int64_t)(s.v & 1));
        err = rc ? errno : 0;
        return model_check(r, &s, "main", rc, err, want, NULL, 0, c->esz);
    case M_RECV:
    case M_RECV_TIMED:
        want = model_recv(c, &v);
        rc = tp_chan_recv(c->real, buf, s.op == M_RECV ? 0 : tp_now() + 1 + (int64_t)(s.v & 1));
        err = rc ? errno : 0;
        return model_check(r, &s, "main", rc, err, want, buf, v, c->esz);
    case M_CLOSE:
        want = c->closed ? EPIPE : 0;
        c->closed = true;
        rc = tp_chan_close(c->real);
        err = rc ? errno : 0;
        return model_check(r, &s, "main", rc, err, want, NULL, 0, c->esz);
    case M_RENEW:
        rc = tp_chan_destroy(c->real);
        err = rc ? errno : 0;
        if (model_check(r, &s, "destroy", rc, err, 0, NULL, 0, c->esz) < 0)
            return -1;
        return model_chan_open(r, s.ch % r->nch, s.arg);
    case M_BAD_DEADLINE: {
        int64_t bad = (s.v & 1) ? INT64_MIN : -2 - (int64_t)(s.v % 1000);
        model_encode(s.v, c->esz, buf);
        rc = (s.arg & 1) ? tp_chan_send(c->real, buf, bad) : tp_chan_recv(c->real, buf, bad);
        err = rc ? errno : 0;
        return model_check(r, &s, "main", rc, err, EINVAL, NULL, 0, c->esz);
    }
    case M_SELECT:
    case M_SELECT_TIMED:
        return model_select(r, &s);
    case M_P_SELECT:
        return model_select_paired(r, &s);
    default:
        return model_paired(r, &s);
    }
}

/* Open the channels (args[i]: size index and capacity of channel i) and start the
   partner r->partner_kind says. */
static inline int model_begin(struct model_run *r, unsigned nch, const uint8_t *args)
{
    r->nch = nch ? (nch > MODEL_MAXCH ? MODEL_MAXCH : nch) : 1;
    r->steps = 0;
    memset(r->ops, 0, sizeof r->ops);
    r->msg[0] = 0;
    for (unsigned i = 0; i < r->nch; i++)
        if (model_chan_open(r, i, args[i]) < 0)
            return -1;
    if (r->partner_kind == PARTNER_NONE)
        return 0;
    r->ctl = tp_chan_create(sizeof(struct model_cmd), 1);
    r->rep = tp_chan_create(sizeof(struct model_reply), 1);
    if (!r->ctl || !r->rep) {
        snprintf(r->msg, sizeof r->msg, "control channels: errno %d", errno);
        return -1;
    }
    if (r->partner_kind == PARTNER_TASK) {
        r->ptask = tp_spawn(r->pool, model_partner, r);
        if (!r->ptask) {
            snprintf(r->msg, sizeof r->msg, "tp_spawn(partner): errno %d", errno);
            return -1;
        }
    } else if (pthread_create(&r->pthread, NULL, model_partner, r) != 0) {
        snprintf(r->msg, sizeof r->msg, "pthread_create(partner) failed");
        return -1;
    }
    return 0;
}

/* Stop the partner and free everything; 0 when all of it went as documented. */
static inline int model_end(struct model_run *r)
{
    int bad = 0;
    if (r->partner_kind != PARTNER_NONE && r->ctl) {
        struct model_cmd quit;
        memset(&quit, 0, sizeof quit);
        quit.op = -1;
        bad |= tp_chan_send(r->ctl, &quit, -1) != 0;
        if (r->partner_kind == PARTNER_TASK && r->ptask)
            bad |= tp_join(r->ptask, NULL, -1) != 0;
        else if (r->partner_kind == PARTNER_THREAD)
            bad |= pthread_join(r->pthread, NULL) != 0;
        bad |= tp_chan_destroy(r->ctl) != 0;
        bad |= tp_chan_destroy(r->rep) != 0;
    }
    for (unsigned i = 0; i < r->nch; i++)
        if (r->ch[i].real)
            bad |= tp_chan_destroy(r->ch[i].real) != 0;
    if (bad && !r->msg[0])
        snprintf(r->msg, sizeof r->msg, "tearing down the script failed: errno %d", errno);
    return bad ? -1 : 0;
}

#endif
