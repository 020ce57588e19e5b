/* The Primary's compiled write path (docs/blockrepl.md, "The Primary's serve loop").
 *
 *   Flight(buckets)  the write batches in flight that the serve loop started, in id order
 *   .serve(nbd_sock, nbd_buf, nbd_start, nbd_end, conn, structured, room, peers, size, fd, table,
 *          al_extent, max_write, max_count, max_bytes, in_flight, next_id, py_oldest, ack_a, ack_b,
 *          answer_at_once, deadline, watch_fd, budget_s, max_batches)
 *       peers: one (sock, buf, start, end, dec_seq, dec_mac, enc_seq, enc_mac, bit) per peer
 *       -> (nbd_start, nbd_end, next_id, submitted, answered, batches, nbd_unsent, others,
 *           peers_out, failed, why)
 *       peers_out: one (start, end, dec_seq, enc_seq, settled_sent, unsent, received, foreign)
 *   .ack(bit, ids, deadline) -> (answers, unknown ids)
 *   .drain() -> [(id, payload, cookies, conn, extents, waiting, acked, answered, local_ok, t0)]
 *   .oldest() -> the oldest id in flight, or 0
 *   .lag(bit) -> data bytes not yet acknowledged by that peer
 *   .extents() -> the activity-log extents with writes in flight
 *   .latency() -> (per-bucket counts, sum of seconds) of the requests it answered
 *   len(flight)
 *
 * serve takes the client's runs of plain writes (as fastpath.scan frames them) whose extents
 * are all in the activity log, and for each: a new id, one WRITES frame to every peer (the
 * settled id in its offset, as peer.send_writes), the local pwrites, an entry here (a run of
 * more than max_count writes goes as near-equal batches of at most max_count); it takes
 * the peers' acknowledgement frames (as rx_acks) and answers a batch once every peer has
 * acknowledged it (answer_at_once: protocol A, once written locally) and the monotonic clock
 * is before `deadline` (the heartbeat deadline). It stops — and the Python side takes over
 * from exactly where it stopped — at anything else: a request or frame it does not take
 * ("request", "frame"), an acknowledgement of a write it did not start ("foreign"), a socket
 * that takes no more ("blocked"), a local write that failed ("failed"), a closed socket
 * ("closed"), the deadline ("deadline"), the event loop having other work ("loop": watch_fd
 * is readable), or the budget ("budget"). With `room` requests in flight it reads no more of
 * the client's until some are answered.
 *
 * Nothing here decides policy: the engine says when serve may run (Primary, nothing held,
 * every peer replicating), and hands the entries to its per-request bookkeeping (drain) for
 * anything else.
 */
#include "_fast.h"
#include <sys/uio.h>

#define MAX_PEERS 8
#define MAX_BUCKETS 32
#define WRITES_TYPE 27

typedef struct {
    uint64_t id;
    PyObject *payload; /* the batch, fastpath.py's format */
    PyObject *cookies; /* its requests' handles, 8 bytes each */
    PyObject *conn;    /* the NBD connection that answers them */
    uint64_t *exts;
    Py_ssize_t nexts;
    uint32_t waiting, acked; /* peers (bits) that have not acknowledged yet / that have */
    int answered, structured, local_ok;
    double t0;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *v;
    Py_ssize_t n, cap;
    double bounds[MAX_BUCKETS];
    Py_ssize_t nbounds;
    unsigned long long counts[MAX_BUCKETS + 1];
    double sum;
} Flight;

static void entry_clear(Entry *e) {
    Py_XDECREF(e->payload);
    Py_XDECREF(e->cookies);
    Py_XDECREF(e->conn);
    PyMem_Free(e->exts);
    memset(e, 0, sizeof(*e));
}

static void flight_remove(Flight *f, Py_ssize_t i) {
    entry_clear(&f->v[i]);
    memmove(&f->v[i], &f->v[i + 1], (size_t)(f->n - i - 1) * sizeof(Entry));
    f->n--;
}

static Py_ssize_t flight_find(Flight *f, uint64_t id) {
    Py_ssize_t lo = 0, hi = f->n; /* ids grow: binary search */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (f->v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->n && f->v[lo].id == id ? lo : -1;
}

static Py_ssize_t entry_count(Entry *e) { return PyBytes_GET_SIZE(e->cookies) / 8; }

/* Where answers go: bytes for the connection being served, (conn, replies, count) for others. */
typedef struct {
    PyObject *conn; /* borrowed; NULL: every answer goes to the list */
    char *buf;
    Py_ssize_t len, cap, answered;
    PyObject *others;
} Answers;

static int answers_room(Answers *a, Py_ssize_t more) {
    if (a->len + more <= a->cap)
        return 0;
    Py_ssize_t cap = a->cap ? a->cap : 4096;
    while (cap < a->len + more)
        cap *= 2;
    char *b = PyMem_Realloc(a->buf, (size_t)cap);
    if (b == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    a->buf = b;
    a->cap = cap;
    return 0;
}

/* Answer entry i's requests and drop it when no peer is still to acknowledge it. */
static int entry_answer(Flight *f, Py_ssize_t i, Answers *a, double now) {
    Entry *e = &f->v[i];
    Py_ssize_t n = entry_count(e), each = e->structured ? 20 : 16;
    const unsigned char *c = (const unsigned char *)PyBytes_AS_STRING(e->cookies);
    if (e->conn == a->conn) {
        if (answers_room(a, n * each) < 0)
            return -1;
        write_replies((unsigned char *)a->buf + a->len, c, n, e->structured);
        a->len += n * each;
        a->answered += n;
    } else {
        PyObject *r = PyBytes_FromStringAndSize(NULL, n * each);
        if (r == NULL)
            return -1;
        write_replies((unsigned char *)PyBytes_AS_STRING(r), c, n, e->structured);
        PyObject *t = Py_BuildValue("(ONn)", e->conn, r, n);
        if (t == NULL || PyList_Append(a->others, t) < 0) {
            Py_XDECREF(t);
            return -1;
        }
        Py_DECREF(t);
    }
    double secs = now - e->t0;
    Py_ssize_t b = 0;
    while (b < f->nbounds && f->bounds[b] < secs) /* bisect_left: the first bound >= secs */
        b++;
    f->counts[b] += (unsigned long long)n;
    f->sum += secs * (double)n;
    e->answered = 1;
    if (e->waiting == 0)
        flight_remove(f, i);
    return 0;
}

/* Peer `bit` acknowledged `id`: 1 if it is one of ours (answered once every peer did, before
 * `deadline`), 0 if not. -1 on a Python error. `*held`: an answer waits for the deadline. */
static int flight_ack(Flight *f, uint32_t bit, uint64_t id, Answers *a, double deadline, int *held) {
    Py_ssize_t i = flight_find(f, id);
    if (i < 0)
        return 0;
    Entry *e = &f->v[i];
    if (!(e->waiting & bit))
        return 1; /* a duplicate: ignored, as engine.peer_ack does */
    e->waiting &= ~bit;
    e->acked |= bit;
    if (e->waiting)
        return 1;
    if (e->answered) {
        flight_remove(f, i);
        return 1;
    }
    double now = now_s();
    if (!e->local_ok || now >= deadline) {
        *held = 1; /* left for the engine (drain) */
        return 1;
    }
    return entry_answer(f, i, a, now) < 0 ? -1 : 1;
}

/* ---- the Flight type ------------------------------------------------------------------ */

static int flight_init(Flight *f, PyObject *args, PyObject *kw) {
    PyObject *buckets;
    if (!PyArg_ParseTuple(args, "O", &buckets))
        return -1;
    PyObject *seq = PySequence_Fast(buckets, "Flight: buckets must be a sequence of floats");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_BUCKETS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "Flight: too many buckets");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        f->bounds[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (f->bounds[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    f->nbounds = n;
    return 0;
}

static void flight_dealloc(Flight *f) {
    for (Py_ssize_t i = 0; i < f->n; i++)
        entry_clear(&f->v[i]);
    PyMem_Free(f->v);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static Py_ssize_t flight_len(Flight *f) { return f->n; }

static PyObject *flight_oldest(Flight *f, PyObject *unused) {
    return PyLong_FromUnsignedLongLong(f->n ? f->v[0].id : 0);
}

static PyObject *flight_lag(Flight *f, PyObject *arg) {
    unsigned long bit = PyLong_AsUnsignedLong(arg);
    if (bit == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long lag = 0;
    for (Py_ssize_t i = 0; i < f->n; i++) {
        Entry *e = &f->v[i];
        if (e->waiting & bit) {
            Py_ssize_t n = entry_count(e);
            lag += (unsigned long long)(PyBytes_GET_SIZE(e->payload) - BATCH_HEAD - BATCH_ENTRY * n);
        }
    }
    return PyLong_FromUnsignedLongLong(lag);
}

static PyObject *flight_extents(Flight *f, PyObject *unused) {
    Extents x = {NULL, 0, 0};
    PyObject *t = NULL;
    for (Py_ssize_t i = 0; i < f->n; i++)
        for (Py_ssize_t k = 0; k < f->v[i].nexts; k++)
            if (ext_add(&x, f->v[i].exts[k], 1, 1) < 0)
                goto out;
    t = ext_tuple(&x);
out:
    PyMem_Free(x.v);
    return t;
}

static PyObject *flight_latency(Flight *f, PyObject *unused) {
    PyObject *counts = PyList_New(f->nbounds + 1);
    if (counts == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i <= f->nbounds; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(f->counts[i]);
        if (v == NULL) {
            Py_DECREF(counts);
            return NULL;
        }
        PyList_SET_ITEM(counts, i, v);
    }
    return Py_BuildValue("(Nd)", counts, f->sum);
}

static PyObject *flight_drain(Flight *f, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < f->n; i++) {
        Entry *e = &f->v[i];
        Extents x = {e->exts, e->nexts, e->nexts};
        PyObject *exts = ext_tuple(&x);
        PyObject *t = exts == NULL ? NULL
                                   : Py_BuildValue("(KOOONkkiid)", (unsigned long long)e->id, e->payload, e->cookies,
                                                   e->conn, exts, (unsigned long)e->waiting,
                                                   (unsigned long)e->acked, e->answered, e->local_ok, e->t0);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    for (Py_ssize_t i = 0; i < f->n; i++)
        entry_clear(&f->v[i]);
    f->n = 0;
    return out;
}

static PyObject *flight_ack_method(Flight *f, PyObject *args) {
    unsigned int bit;
    PyObject *ids;
    double deadline;
    if (!PyArg_ParseTuple(args, "IO!d", &bit, &PyList_Type, &ids, &deadline))
        return NULL;
    Answers a = {NULL, NULL, 0, 0, 0, PyList_New(0)};
    PyObject *unknown = PyList_New(0), *result = NULL;
    int held = 0;
    if (a.others == NULL || unknown == NULL)
        goto out;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(ids); k++) {
        PyObject *o = PyList_GET_ITEM(ids, k);
        unsigned long long id = PyLong_AsUnsignedLongLong(o);
        if (id == (unsigned long long)-1 && PyErr_Occurred())
            goto out;
        int ours = flight_ack(f, bit, id, &a, deadline, &held);
        if (ours < 0 || (!ours && PyList_Append(unknown, o) < 0))
            goto out;
    }
    result = Py_BuildValue("(OO)", a.others, unknown);
out:
    Py_XDECREF(a.others);
    Py_XDECREF(unknown);
    return result;
}

/* ---- the serve loop --------------------------------------------------------------------- */

typedef struct {
    int sock;
    Py_buffer view;
    Py_ssize_t start, end;
    uint64_t dec_seq, enc_seq;
    PyObject *dec_mac, *enc_mac; /* borrowed */
    uint32_t bit;
    long long settled_sent;
    PyObject *unsent; /* bytes not taken by the socket (then nothing more is sent to it), or NULL */
    int received;
    PyObject *foreign;
} Peer;

typedef struct {
    Flight *f;
    int nbd, fd, answer_at_once;
    unsigned char *buf;
    Py_ssize_t buflen, start, end, room, in_flight, max_count, max_bytes;
    PyObject *conn, *table;
    int structured;
    uint64_t size, al_extent, next_id, py_oldest;
    uint32_t max_write;
    unsigned int ack_a, ack_b;
    double deadline;
    Peer p[MAX_PEERS];
    int np;
    Answers a;
    Py_ssize_t submitted, batches;
    PyObject *failed;
    const char *why;
} Serve;

/* Append data[off:len] of several parts to the peer's unsent bytes. */
static int keep_unsent(Peer *p, struct iovec *iov, int n, size_t skip) {
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (skip >= total)
        return 0;
    Py_ssize_t had = p->unsent ? PyBytes_GET_SIZE(p->unsent) : 0;
    PyObject *u = PyBytes_FromStringAndSize(NULL, had + (Py_ssize_t)(total - skip));
    if (u == NULL)
        return -1;
    char *o = PyBytes_AS_STRING(u);
    if (had)
        memcpy(o, PyBytes_AS_STRING(p->unsent), (size_t)had);
    o += had;
    for (int i = 0; i < n; i++) {
        size_t l = iov[i].iov_len;
        const char *b = iov[i].iov_base;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(o, b + skip, l - skip);
        o += l - skip;
        skip = 0;
    }
    Py_XSETREF(p->unsent, u);
    return 0;
}

/* Send one frame's parts to the peer: what the socket does not take is kept (and the loop
 * stops). 0, or -1 on a Python error. */
static int peer_send(Serve *s, Peer *p, struct iovec *iov, int n) {
    size_t sent = 0;
    if (p->unsent == NULL) {
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += iov[i].iov_len;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        while (sent < total) {
            struct iovec rest[4];
            int k = 0;
            size_t skip = sent;
            for (int i = 0; i < n; i++) {
                if (skip >= iov[i].iov_len) {
                    skip -= iov[i].iov_len;
                    continue;
                }
                rest[k].iov_base = (char *)iov[i].iov_base + skip;
                rest[k].iov_len = iov[i].iov_len - skip;
                skip = 0;
                k++;
            }
            struct msghdr m = {.msg_iov = rest, .msg_iovlen = (size_t)k};
            ssize_t w = sendmsg(p->sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            sent += (size_t)w;
        }
        Py_END_ALLOW_THREADS
        if (sent == total)
            return 0;
        s->why = err == EAGAIN || err == EWOULDBLOCK ? "blocked" : "closed";
    }
    return keep_unsent(p, iov, n, sent);
}

/* Start the run of n plain writes at buf[pos:]: a new id, a WRITES frame to every peer, the
 * local writes, an entry. 0, or -1 on a Python error. */
static int submit(Serve *s, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t data, Extents *seen) {
    Flight *f = s->f;
    if (f->n == f->cap) {
        Py_ssize_t cap = f->cap ? 2 * f->cap : 64;
        Entry *v = PyMem_Realloc(f->v, (size_t)cap * sizeof(Entry));
        if (v == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        f->v = v;
        f->cap = cap;
    }
    Py_ssize_t plen = BATCH_HEAD + BATCH_ENTRY * n + data;
    PyObject *payload = PyBytes_FromStringAndSize(NULL, plen);
    PyObject *cookies = PyBytes_FromStringAndSize(NULL, 8 * n);
    uint64_t *exts = PyMem_Malloc((size_t)(seen->n ? seen->n : 1) * sizeof(uint64_t));
    if (payload == NULL || cookies == NULL || exts == NULL) {
        Py_XDECREF(payload);
        Py_XDECREF(cookies);
        PyMem_Free(exts);
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return -1;
    }
    unsigned char *pp = (unsigned char *)PyBytes_AS_STRING(payload);
    fill_batch(s->buf, pos, n, pp, (unsigned char *)PyBytes_AS_STRING(cookies));
    memcpy(exts, seen->v, (size_t)seen->n * sizeof(uint64_t));
    uint64_t id = s->next_id++;
    uint64_t oldest = f->n ? f->v[0].id : id;
    if (s->py_oldest < oldest)
        oldest = s->py_oldest;
    uint64_t settled = oldest - 1;
    Entry *e = &f->v[f->n++];
    *e = (Entry){id, payload, cookies, s->conn, exts, seen->n, 0, 0, 0, s->structured, 1, now_s()};
    Py_INCREF(s->conn);
    for (int k = 0; k < s->np; k++) {
        Peer *p = &s->p[k];
        unsigned char hdr[FRAME_HEAD], tag[MAC_LEN];
        memset(hdr, 0, sizeof(hdr));
        hdr[0] = FRAME_MAGIC >> 8;
        hdr[1] = FRAME_MAGIC & 0xff;
        hdr[2] = WRITES_TYPE;
        put32(hdr + 4, (uint32_t)plen);
        put64(hdr + 8, p->enc_seq + 1);
        put64(hdr + 16, id);
        put64(hdr + 24, settled);
        if (p->enc_mac != Py_None && tag_of(p->enc_mac, p->enc_seq + 1, hdr, pp, plen, tag) < 0)
            return -1;
        p->enc_seq++;
        p->settled_sent = (long long)settled;
        e->waiting |= p->bit;
        struct iovec iov[3] = {{hdr, FRAME_HEAD}, {pp, (size_t)plen}, {tag, MAC_LEN}};
        if (peer_send(s, p, iov, p->enc_mac != Py_None ? 3 : 2) < 0)
            return -1;
    }
    int err = write_all(s->fd, pp, n);
    s->submitted += n;
    s->batches++;
    if (err) {
        e->local_ok = 0;
        s->failed = Py_BuildValue("(Ki)", (unsigned long long)id, err);
        s->why = "failed";
        return s->failed == NULL ? -1 : 0;
    }
    if (s->answer_at_once) {
        double now = now_s();
        if (now < s->deadline)
            return entry_answer(f, f->n - 1, &s->a, now);
        s->why = "deadline";
    }
    return 0;
}

/* Take the runs of plain writes at the head of the client's buffer. 0 (stopped: s->why says
 * why if the loop must end), or -1 on a Python error. `*need`: bytes the head request needs. */
static int take_requests(Serve *s, Extents *seen, Py_ssize_t *need) {
    *need = REQ_SIZE;
    while (s->why == NULL) {
        const unsigned char *b = s->buf;
        Py_ssize_t pos = s->start;
        if (s->end - pos < REQ_SIZE)
            return 0;
        if (be32(b + pos) != REQUEST_MAGIC || !batchable(b + pos, s->size, s->max_write)) {
            s->why = "request";
            return 0;
        }
        if (s->end - pos - REQ_SIZE < (Py_ssize_t)be32(b + pos + 24)) {
            *need = REQ_SIZE + be32(b + pos + 24);
            return 0;
        }
        Py_ssize_t room = s->room - (s->in_flight + s->submitted - s->a.answered);
        if (room <= 0)
            return 0; /* read no more until some are answered */
        /* a run longer than max_count goes as near-equal batches of at most max_count: the peers
         * write and acknowledge one while the next is on its way (docs/blockrepl.md, "Pipelining") */
        Py_ssize_t data, n = batch_run(b, pos, s->end, s->size, s->max_write, room, s->max_bytes, &data);
        if (n > s->max_count) {
            Py_ssize_t parts = (n + s->max_count - 1) / s->max_count;
            n = batch_run(b, pos, s->end, s->size, s->max_write, (n + parts - 1) / parts, s->max_bytes, &data);
        }
        seen->n = 0;
        if (run_extents(b, pos, n, s->al_extent, seen) < 0)
            return -1;
        int active = all_active(s->table, seen);
        if (active < 0)
            return -1;
        if (!active) {
            s->why = "request"; /* the activity log grows first: the engine's path */
            return 0;
        }
        if (now_s() >= s->deadline) {
            s->why = "deadline";
            return 0;
        }
        if (submit(s, pos, n, data, seen) < 0)
            return -1;
        s->start = pos + REQ_SIZE * n + data;
    }
    return 0;
}

/* Take the acknowledgement frames at the head of a peer's buffer. 0, or -1 on a Python error;
 * `*need`: bytes the frame at the head needs. */
static int take_acks(Serve *s, Peer *p, Py_ssize_t *need) {
    const unsigned char *b = p->view.buf;
    Py_ssize_t maclen = p->dec_mac == Py_None ? 0 : MAC_LEN;
    *need = FRAME_HEAD + maclen;
    for (;;) {
        const unsigned char *fr = b + p->start;
        Py_ssize_t avail = p->end - p->start;
        Py_ssize_t len = next_frame(fr, avail, s->ack_a, s->ack_b, p->dec_seq, p->dec_mac);
        if (len == -2)
            return -1;
        if (len < 0 || len % 8) {
            if (avail >= FRAME_HEAD) { /* one it does not take: the parser's once all here */
                uint64_t whole = FRAME_HEAD + (uint64_t)be32(fr + 4) + (uint64_t)maclen;
                if ((uint64_t)avail >= whole || whole > (uint64_t)p->view.len / 2) {
                    s->why = "frame";
                    return 0;
                }
                *need = (Py_ssize_t)whole;
            }
            return 0;
        }
        int held = 0;
        for (Py_ssize_t k = 0; k < len; k += 8) {
            uint64_t id = be64(fr + FRAME_HEAD + k);
            int ours = flight_ack(s->f, p->bit, id, &s->a, s->deadline, &held);
            if (ours < 0)
                return -1;
            if (!ours) {
                PyObject *o = PyLong_FromUnsignedLongLong(id);
                if (o == NULL || PyList_Append(p->foreign, o) < 0) {
                    Py_XDECREF(o);
                    return -1;
                }
                Py_DECREF(o);
            }
        }
        p->start += FRAME_HEAD + len + maclen;
        p->dec_seq++;
        if (held && s->why == NULL)
            s->why = "deadline";
        if (PyList_GET_SIZE(p->foreign) && s->why == NULL)
            s->why = "foreign"; /* the engine's own writes: after this frame */
    }
}

/* Read what a socket has; sets s->why to "closed" at its end. */
static void receive(Serve *s, int sock, unsigned char *b, Py_ssize_t len, Py_ssize_t *end, int *got) {
    if (*end >= len)
        return;
    ssize_t r;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    r = recv(sock, b + *end, (size_t)(len - *end), MSG_DONTWAIT);
    err = r < 0 ? errno : 0;
    Py_END_ALLOW_THREADS
    if (r > 0) {
        *end += r;
        *got = 1;
    } else if (r == 0 || (err != EAGAIN && err != EWOULDBLOCK && err != EINTR)) {
        s->why = "closed"; /* the end of the stream, or an error the event loop's read reports */
    }
}

static int serve_loop(Serve *s, int watch, double budget, Py_ssize_t max_batches, PyObject **nbd_unsent) {
    Extents seen = {NULL, 0, 0};
    double until = now_s() + budget;
    int rc = -1;
    for (;;) {
        Py_ssize_t need_nbd = REQ_SIZE, need[MAX_PEERS];
        for (int k = 0; k < s->np; k++) {
            if (take_acks(s, &s->p[k], &need[k]) < 0)
                goto out;
        }
        if (s->why == NULL && take_requests(s, &seen, &need_nbd) < 0)
            goto out;
        if (s->a.len) { /* the answers of this turn, in one send */
            Py_ssize_t off = 0;
            int bad = send_some(s->nbd, s->a.buf, s->a.len, &off);
            if (off < s->a.len) {
                *nbd_unsent = PyBytes_FromStringAndSize(s->a.buf + off, s->a.len - off);
                if (*nbd_unsent == NULL)
                    goto out;
                if (s->why == NULL)
                    s->why = bad ? "closed" : "blocked";
            }
            s->a.len = 0;
        }
        if (s->why != NULL)
            break;
        for (int k = 0; k < s->np; k++) {
            if (s->p[k].unsent != NULL) {
                s->why = "blocked";
                break;
            }
        }
        if (s->why != NULL)
            break;
        double now = now_s();
        if (s->batches >= max_batches || now >= until) {
            s->why = "budget";
            break;
        }
        if (now >= s->deadline) {
            s->why = "deadline";
            break;
        }
        make_room(s->buf, s->buflen, &s->start, &s->end, need_nbd);
        struct pollfd pfd[MAX_PEERS + 2];
        int nfd = 0, full = s->in_flight + s->submitted - s->a.answered >= s->room;
        for (int k = 0; k < s->np; k++) {
            Peer *p = &s->p[k];
            make_room(p->view.buf, p->view.len, &p->start, &p->end, need[k]);
            pfd[nfd++] = (struct pollfd){.fd = p->sock, .events = POLLIN};
        }
        pfd[nfd++] = (struct pollfd){.fd = full ? -1 : s->nbd, .events = POLLIN}; /* -1: not watched */
        pfd[nfd++] = (struct pollfd){.fd = watch, .events = POLLIN};
        int ready;
        double left = until - now;
        if (s->deadline - now < left)
            left = s->deadline - now;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(pfd, (nfds_t)nfd, (int)(left * 1000) + 1);
        Py_END_ALLOW_THREADS
        if (ready < 0 && errno != EINTR) {
            s->why = "closed";
            break;
        }
        if (ready <= 0)
            continue;
        if (watch >= 0 && pfd[nfd - 1].revents) {
            s->why = "loop";
            break;
        }
        for (int k = 0; k < s->np && s->why == NULL; k++) {
            Peer *p = &s->p[k];
            if (pfd[k].revents)
                receive(s, p->sock, p->view.buf, p->view.len, &p->end, &p->received);
        }
        int got = 0;
        if (s->why == NULL && pfd[nfd - 2].revents)
            receive(s, s->nbd, s->buf, s->buflen, &s->end, &got);
        if (s->why != NULL)
            break;
    }
    rc = 0;
out:
    PyMem_Free(seen.v);
    return rc;
}

static PyObject *flight_serve(Flight *f, PyObject *args) {
    Serve s;
    memset(&s, 0, sizeof(s));
    Py_buffer nbd_view;
    PyObject *peers, *result = NULL, *nbd_unsent = NULL, *peers_out = NULL;
    int watch;
    double budget;
    Py_ssize_t max_batches;
    if (!PyArg_ParseTuple(args, "iw*nnOpnO!KiO!KInnnKKIIpdidn", &s.nbd, &nbd_view, &s.start, &s.end, &s.conn,
                          &s.structured, &s.room, &PyTuple_Type, &peers, &s.size, &s.fd, &PyDict_Type, &s.table,
                          &s.al_extent, &s.max_write, &s.max_count, &s.max_bytes, &s.in_flight, &s.next_id,
                          &s.py_oldest, &s.ack_a, &s.ack_b, &s.answer_at_once, &s.deadline, &watch, &budget,
                          &max_batches))
        return NULL;
    s.f = f;
    s.buf = nbd_view.buf;
    s.buflen = nbd_view.len;
    s.failed = Py_None;
    Py_INCREF(Py_None);
    s.a.conn = s.conn;
    s.a.others = PyList_New(0);
    if (s.a.others == NULL)
        goto out;
    s.np = (int)PyTuple_GET_SIZE(peers);
    if (s.np < 1 || s.np > MAX_PEERS || s.start < 0 || s.end > s.buflen || s.start > s.end || s.al_extent == 0 ||
        s.buflen < MIN_SERVE_BUFFER || s.max_count < 1 || s.max_count > MAX_ENTRIES || s.max_write > MAX_REQUEST ||
        s.room < 1) {
        s.np = 0;
        PyErr_SetString(PyExc_ValueError, "serve: bad bounds");
        goto out;
    }
    for (int k = 0; k < s.np; k++) {
        Peer *p = &s.p[k];
        PyObject *buf;
        unsigned long long dseq, eseq;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(peers, k), "iOnnKOKOI", &p->sock, &buf, &p->start, &p->end, &dseq,
                              &p->dec_mac, &eseq, &p->enc_mac, &p->bit) ||
            PyObject_GetBuffer(buf, &p->view, PyBUF_WRITABLE) < 0) {
            s.np = k;
            goto out;
        }
        p->dec_seq = dseq;
        p->enc_seq = eseq;
        p->settled_sent = -1;
        p->foreign = PyList_New(0);
        if (p->foreign == NULL || p->start < 0 || p->end > p->view.len || p->start > p->end ||
            p->view.len < MIN_SERVE_BUFFER) {
            s.np = k + 1;
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "serve: bad peer bounds");
            goto out;
        }
    }
    if (serve_loop(&s, watch, budget, max_batches, &nbd_unsent) < 0)
        goto out;
    peers_out = PyTuple_New(s.np);
    if (peers_out == NULL)
        goto out;
    for (int k = 0; k < s.np; k++) {
        Peer *p = &s.p[k];
        PyObject *t = Py_BuildValue("(nnKKLOOO)", p->start, p->end, (unsigned long long)p->dec_seq,
                                    (unsigned long long)p->enc_seq, p->settled_sent,
                                    p->unsent ? p->unsent : Py_None, p->received ? Py_True : Py_False, p->foreign);
        if (t == NULL)
            goto out;
        PyTuple_SET_ITEM(peers_out, k, t);
    }
    result = Py_BuildValue("(nnKnnnOOOOs)", s.start, s.end, (unsigned long long)s.next_id, s.submitted, s.a.answered,
                           s.batches, nbd_unsent ? nbd_unsent : Py_None, s.a.others, peers_out, s.failed,
                           s.why ? s.why : "budget");
out:
    for (int k = 0; k < s.np; k++) {
        PyBuffer_Release(&s.p[k].view);
        Py_XDECREF(s.p[k].unsent);
        Py_XDECREF(s.p[k].foreign);
    }
    Py_XDECREF(peers_out);
    Py_XDECREF(nbd_unsent);
    Py_XDECREF(s.a.others);
    Py_XDECREF(s.failed);
    PyMem_Free(s.a.buf);
    PyBuffer_Release(&nbd_view);
    return result;
}

static PyMethodDef flight_methods[] = {
    {"serve", (PyCFunction)flight_serve, METH_VARARGS, "The Primary's serve loop (see the module comment)."},
    {"ack", (PyCFunction)flight_ack_method, METH_VARARGS, "A peer's acknowledgements: (answers, unknown ids)."},
    {"drain", (PyCFunction)flight_drain, METH_NOARGS, "Every entry, removed, for the engine's bookkeeping."},
    {"oldest", (PyCFunction)flight_oldest, METH_NOARGS, "The oldest id in flight, or 0."},
    {"lag", (PyCFunction)flight_lag, METH_O, "Data bytes a peer (bit) has not acknowledged."},
    {"extents", (PyCFunction)flight_extents, METH_NOARGS, "Activity-log extents with writes in flight."},
    {"latency", (PyCFunction)flight_latency, METH_NOARGS, "(per-bucket counts, sum of seconds) answered."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods flight_sequence = {.sq_length = (lenfunc)flight_len};

static PyTypeObject FlightType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hastack_blockrepl._fast.Flight",
    .tp_basicsize = sizeof(Flight),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The write batches in flight that the Primary's serve loop started.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)flight_init,
    .tp_dealloc = (destructor)flight_dealloc,
    .tp_methods = flight_methods,
    .tp_as_sequence = &flight_sequence,
};

int primary_add_types(PyObject *m) {
    return PyModule_AddType(m, &FlightType); /* under its tp_name's last part */
}
