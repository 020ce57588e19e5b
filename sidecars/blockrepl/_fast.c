/* The compiled inner loops of blockrepl's small-write path (see fastpath.py, which holds the
 * reference implementation in Python and documents the formats).
 *
 *   scan(buf, start, end, size, al_extent, max_write, max_count, max_bytes) -> (items, pos)
 *   check(payload, size, al_extent) -> extents
 *   apply(fd, payload, size) -> count
 *   replies(cookies, structured) -> bytes
 *   reads(fd, buf, start, end, size, structured, max_count, max_bytes) -> (replies, pos, count)
 *   rx_writes(buf, start, end, ftype, seq, mac, size, fd, table, al_extent)
 *       -> (pos, seq, ids, extents, settled, failed)
 *   rx_acks(buf, start, end, type_a, type_b, seq, mac) -> (pos, seq, ids)
 *   serve_writes(sock, buf, start, end, ftype, seq, mac, size, fd, table, al_extent,
 *                ack_type, enc_seq, enc_mac, watch_fd, budget_s, max_frames, each)
 *       -> (start, end, seq, enc_seq, ids, extents, settled, failed, unsent, why)
 *
 * Nothing here decides policy: scan only frames NBD requests and groups runs of plain writes,
 * check and apply validate a whole batch (apply before writing any of it), replies builds
 * success replies.
 */
#include "_fast.h"

int ext_add(Extents *x, uint64_t off, uint64_t len, uint64_t al_extent) {
    for (uint64_t e = off / al_extent; e <= (off + len - 1) / al_extent; e++) {
        Py_ssize_t k = x->n;
        while (k > 0 && x->v[k - 1] != e) /* recent extents first: runs of writes cluster */
            k--;
        if (k > 0)
            continue;
        if (x->n == x->cap) {
            Py_ssize_t cap = x->cap ? 2 * x->cap : 16;
            uint64_t *v = PyMem_Realloc(x->v, (size_t)cap * sizeof(uint64_t));
            if (v == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            x->v = v;
            x->cap = cap;
        }
        x->v[x->n++] = e;
    }
    return 0;
}

PyObject *ext_tuple(Extents *x) {
    PyObject *t = PyTuple_New(x->n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < x->n; k++) {
        PyObject *v = PyLong_FromUnsignedLongLong(x->v[k]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, v);
    }
    return t;
}

/* The run of plain writes at b[pos:end] one batch takes: at most max_count, whole, and after
 * the first no more than max_bytes of data. Its number of writes; *data: their data bytes. */
Py_ssize_t batch_run(const unsigned char *b, Py_ssize_t pos, Py_ssize_t end, uint64_t size, uint32_t max_write,
                     Py_ssize_t max_count, Py_ssize_t max_bytes, Py_ssize_t *data) {
    Py_ssize_t n = 0;
    *data = 0;
    while (n < max_count && end - pos >= REQ_SIZE && be32(b + pos) == REQUEST_MAGIC &&
           batchable(b + pos, size, max_write)) {
        uint32_t l = be32(b + pos + 24);
        if (end - pos - REQ_SIZE < (Py_ssize_t)l || (n > 0 && *data + l > max_bytes))
            break;
        n++;
        *data += l;
        pos += REQ_SIZE + l;
    }
    return n;
}

/* The activity-log extents of the run of n writes at b[pos:], added to x. 0, or -1 (memory). */
int run_extents(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, uint64_t al_extent, Extents *x) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t len = be32(b + pos + 24);
        if (ext_add(x, be64(b + pos + 16), len, al_extent) < 0)
            return -1;
        pos += REQ_SIZE + len;
    }
    return 0;
}

/* The run of n writes at b[pos:] as a batch (payload: head, table, data) and their cookies. */
void fill_batch(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, unsigned char *payload,
                unsigned char *cookies) {
    unsigned char *dp = payload + BATCH_HEAD + BATCH_ENTRY * n;
    put32(payload, (uint32_t)n);
    put32(payload + 4, 0);
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *h = b + pos;
        uint32_t len = be32(h + 24);
        unsigned char *e = payload + BATCH_HEAD + BATCH_ENTRY * i;
        memcpy(e, h + 16, 8);
        put32(e + 8, len);
        put32(e + 12, 0);
        memcpy(cookies + 8 * i, h + 8, 8);
        memcpy(dp, h + REQ_SIZE, len);
        dp += len;
        pos += REQ_SIZE + len;
    }
}

static PyObject *make_batch(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t data,
                            uint64_t al_extent) {
    PyObject *payload = PyBytes_FromStringAndSize(NULL, BATCH_HEAD + BATCH_ENTRY * n + data);
    PyObject *cookies = PyBytes_FromStringAndSize(NULL, 8 * n);
    PyObject *exts = NULL, *item = NULL;
    Extents seen = {NULL, 0, 0};
    if (payload == NULL || cookies == NULL || run_extents(b, pos, n, al_extent, &seen) < 0)
        goto fail;
    fill_batch(b, pos, n, (unsigned char *)PyBytes_AS_STRING(payload), (unsigned char *)PyBytes_AS_STRING(cookies));
    exts = ext_tuple(&seen);
    if (exts == NULL)
        goto fail;
    item = PyTuple_Pack(3, payload, cookies, exts);
fail:
    PyMem_Free(seen.v);
    Py_XDECREF(payload);
    Py_XDECREF(cookies);
    Py_XDECREF(exts);
    return item;
}

static PyObject *fast_scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, max_count, max_bytes;
    unsigned long long size, al_extent;
    unsigned int max_write;
    if (!PyArg_ParseTuple(args, "y*nnKKInn", &view, &start, &end, &size, &al_extent, &max_write, &max_count,
                          &max_bytes))
        return NULL;
    PyObject *items = NULL, *result = NULL;
    if (start < 0 || end > view.len || start > end || al_extent == 0 || max_count < 1 || max_count > MAX_ENTRIES) {
        PyErr_SetString(PyExc_ValueError, "scan: bad bounds");
        goto out;
    }
    if (max_write > MAX_REQUEST)
        max_write = MAX_REQUEST;
    items = PyList_New(0);
    if (items == NULL)
        goto out;
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t pos = start;
    while (end - pos >= REQ_SIZE) {
        const unsigned char *h = b + pos;
        if (be32(h) != REQUEST_MAGIC)
            break; /* the reference parser reports it */
        uint16_t cmd = be16(h + 6);
        uint32_t len = be32(h + 24);
        if (cmd == CMD_WRITE && (len > MAX_REQUEST || end - pos - REQ_SIZE < (Py_ssize_t)len))
            break; /* oversize (reported by the reference parser) or the payload is still arriving */
        if (batchable(h, size, max_write)) {
            Py_ssize_t data, n = batch_run(b, pos, end, size, max_write, max_count, max_bytes, &data);
            PyObject *it = make_batch(b, pos, n, data, al_extent);
            if (it == NULL || PyList_Append(items, it) < 0) {
                Py_XDECREF(it);
                goto out;
            }
            Py_DECREF(it);
            pos += REQ_SIZE * n + data;
            continue;
        }
        Py_ssize_t dstart = pos + REQ_SIZE;
        PyObject *it = Py_BuildValue("(IIKKIn)", (unsigned int)cmd, (unsigned int)be16(h + 4),
                                     (unsigned long long)be64(h + 8), (unsigned long long)be64(h + 16),
                                     (unsigned int)len, dstart);
        if (it == NULL || PyList_Append(items, it) < 0) {
            Py_XDECREF(it);
            goto out;
        }
        Py_DECREF(it);
        pos += REQ_SIZE + (cmd == CMD_WRITE ? len : 0);
    }
    result = Py_BuildValue("(On)", items, pos);
out:
    Py_XDECREF(items);
    PyBuffer_Release(&view);
    return result;
}

/* The whole batch is well formed and inside the volume: its number of writes, or -1 (ValueError). */
Py_ssize_t validate(const unsigned char *p, Py_ssize_t len, uint64_t size) {
    if (len < BATCH_HEAD) {
        PyErr_Format(PyExc_ValueError, "write batch of %zd bytes has no header", len);
        return -1;
    }
    Py_ssize_t n = be32(p);
    uint64_t total = 0;
    if (n < 1 || n > MAX_ENTRIES || be32(p + 4) != 0 || len < BATCH_HEAD + BATCH_ENTRY * n) {
        PyErr_Format(PyExc_ValueError, "write batch header invalid (%zd writes in %zd bytes)", n, len);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *e = p + BATCH_HEAD + BATCH_ENTRY * i;
        uint64_t off = be64(e);
        uint32_t l = be32(e + 8);
        if (l == 0 || be32(e + 12) != 0 || off > size || l > size - off) {
            PyErr_Format(PyExc_ValueError, "write %zd of a batch at %llu+%u is empty or beyond the volume (%llu)", i,
                         (unsigned long long)off, l, (unsigned long long)size);
            return -1;
        }
        total += l;
    }
    if (total != (uint64_t)(len - BATCH_HEAD - BATCH_ENTRY * n)) {
        PyErr_Format(PyExc_ValueError, "write batch carries %zd data bytes, its table says %llu",
                     len - BATCH_HEAD - BATCH_ENTRY * n, (unsigned long long)total);
        return -1;
    }
    return n;
}

static PyObject *fast_check(PyObject *self, PyObject *args) {
    Py_buffer view;
    unsigned long long size, al_extent;
    if (!PyArg_ParseTuple(args, "y*KK", &view, &size, &al_extent))
        return NULL;
    const unsigned char *p = (const unsigned char *)view.buf;
    PyObject *result = NULL;
    Extents seen = {NULL, 0, 0};
    Py_ssize_t n = -1;
    if (al_extent == 0) {
        PyErr_SetString(PyExc_ValueError, "check: activity-log extent of 0 bytes");
        goto out;
    }
    n = validate(p, view.len, size);
    if (n < 0)
        goto out;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *e = p + BATCH_HEAD + BATCH_ENTRY * i;
        if (ext_add(&seen, be64(e), be32(e + 8), al_extent) < 0)
            goto out;
    }
    result = ext_tuple(&seen);
out:
    PyMem_Free(seen.v);
    PyBuffer_Release(&view);
    return result;
}

/* Write a validated batch of n writes to fd: 0, or the errno of the first failure. */
int write_all(int fd, const unsigned char *p, Py_ssize_t n) {
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *d = p + BATCH_HEAD + BATCH_ENTRY * n;
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        const unsigned char *e = p + BATCH_HEAD + BATCH_ENTRY * i;
        uint64_t off = be64(e);
        size_t left = be32(e + 8);
        while (left > 0) {
            ssize_t w = pwrite(fd, d, left, (off_t)off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            if (w == 0) {
                err = ENOSPC;
                break;
            }
            d += w;
            off += (uint64_t)w;
            left -= (size_t)w;
        }
    }
    Py_END_ALLOW_THREADS
    return err;
}

static PyObject *fast_apply(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer view;
    unsigned long long size;
    if (!PyArg_ParseTuple(args, "iy*K", &fd, &view, &size))
        return NULL;
    const unsigned char *p = (const unsigned char *)view.buf;
    PyObject *result = NULL;
    Py_ssize_t n = validate(p, view.len, size);
    if (n < 0)
        goto out;
    int err = write_all(fd, p, n);
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    result = PyLong_FromSsize_t(n);
out:
    PyBuffer_Release(&view);
    return result;
}

/* The success replies of n requests (their 8-byte cookies), 16 or 20 bytes each, at o. */
void write_replies(unsigned char *o, const unsigned char *c, Py_ssize_t n, int structured) {
    Py_ssize_t each = structured ? 20 : 16;
    for (Py_ssize_t i = 0; i < n; i++, o += each, c += 8) {
        if (structured) {
            put32(o, STRUCTURED_REPLY_MAGIC);
            o[4] = 0; o[5] = 1; /* flags: DONE */
            o[6] = 0; o[7] = 0; /* type: NONE */
            memcpy(o + 8, c, 8);
            put32(o + 16, 0);
        } else {
            put32(o, SIMPLE_REPLY_MAGIC);
            put32(o + 4, 0);
            memcpy(o + 8, c, 8);
        }
    }
}

static PyObject *fast_replies(PyObject *self, PyObject *args) {
    Py_buffer view;
    int structured;
    if (!PyArg_ParseTuple(args, "y*p", &view, &structured))
        return NULL;
    PyObject *out = NULL;
    if (view.len % 8) {
        PyErr_SetString(PyExc_ValueError, "cookies are 8 bytes each");
        goto done;
    }
    Py_ssize_t n = view.len / 8;
    out = PyBytes_FromStringAndSize(NULL, n * (structured ? 20 : 16));
    if (out != NULL)
        write_replies((unsigned char *)PyBytes_AS_STRING(out), (const unsigned char *)view.buf, n, structured);
done:
    PyBuffer_Release(&view);
    return out;
}


/* reads: the run of plain READs at the head of a client's buffer, answered from fd. */
#define CMD_READ 0
#define CMDF_DF 4

static int plain_read(const unsigned char *h, uint64_t size) {
    uint64_t off = be64(h + 16);
    uint32_t len = be32(h + 24);
    return be32(h) == REQUEST_MAGIC && be16(h + 6) == CMD_READ && (be16(h + 4) & ~CMDF_DF) == 0 && len > 0 &&
           len <= MAX_REQUEST && off <= size && len <= size - off;
}

/* The reply header of a read of len bytes at off: simple, or a final OFFSET_DATA chunk. */
static Py_ssize_t read_header(unsigned char *o, const unsigned char *cookie, uint64_t off, uint32_t len,
                              int structured) {
    if (!structured) {
        put32(o, SIMPLE_REPLY_MAGIC);
        put32(o + 4, 0);
        memcpy(o + 8, cookie, 8);
        return 16;
    }
    put32(o, STRUCTURED_REPLY_MAGIC);
    o[4] = 0; o[5] = 1; /* flags: DONE */
    o[6] = 0; o[7] = 1; /* type: OFFSET_DATA */
    memcpy(o + 8, cookie, 8);
    put32(o + 16, 8 + len);
    put64(o + 20, off);
    return 28;
}

static PyObject *fast_reads(PyObject *self, PyObject *args) {
    int fd, structured;
    Py_buffer view;
    Py_ssize_t start, end, max_count, max_bytes;
    unsigned long long size;
    if (!PyArg_ParseTuple(args, "iy*nnKpnn", &fd, &view, &start, &end, &size, &structured, &max_count, &max_bytes))
        return NULL;
    PyObject *out = NULL, *result = NULL;
    if (start < 0 || end > view.len || start > end || max_count < 1) {
        PyErr_SetString(PyExc_ValueError, "reads: bad bounds");
        goto done;
    }
    const unsigned char *b = view.buf;
    Py_ssize_t n = 0, total = 0, p = start, each = structured ? 28 : 16;
    while (n < max_count && end - p >= REQ_SIZE && plain_read(b + p, size)) {
        Py_ssize_t len = be32(b + p + 24);
        if (n > 0 && total + len > max_bytes)
            break;
        total += each + len;
        n++;
        p += REQ_SIZE;
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    Py_ssize_t done_n = 0, used = 0;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; done_n < n; done_n++) {
        const unsigned char *h = b + start + REQ_SIZE * done_n;
        uint64_t off = be64(h + 16);
        size_t left = be32(h + 24);
        Py_ssize_t hl = read_header(o + used, h + 8, off, (uint32_t)left, structured);
        unsigned char *d = o + used + hl;
        while (left > 0) {
            ssize_t r = pread(fd, d, left, (off_t)off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                err = 1; /* an error or a short read: the Python path reports this request */
                break;
            }
            d += r;
            off += (uint64_t)r;
            left -= (size_t)r;
        }
        if (err)
            break;
        used = d - o;
    }
    Py_END_ALLOW_THREADS
    if (used < total && _PyBytes_Resize(&out, used) < 0)
        goto done;
    result = Py_BuildValue("(Onn)", out, start + REQ_SIZE * done_n, done_n);
done:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return result;
}


/* rx_writes: the WRITES frames at the head of a replication receive buffer (wire.py). */

int tags_equal(const unsigned char *a, const unsigned char *b) {
    unsigned char d = 0;
    for (int i = 0; i < MAC_LEN; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

/* The tag of a frame (header, and a payload of len bytes) from mac(seq, header, payload), into
 * out. 0, or -1 on a Python error. */
int tag_of(PyObject *mac, uint64_t seq, const unsigned char *h, const unsigned char *body, Py_ssize_t len,
           unsigned char *out) {
    int direct = gmac_tag(mac, seq, h, body, len, out); /* the compiled MAC, without the interpreter */
    if (direct <= 0)
        return direct;
    PyObject *hdr = PyMemoryView_FromMemory((char *)h, FRAME_HEAD, PyBUF_READ);
    PyObject *pl = PyMemoryView_FromMemory((char *)body, len, PyBUF_READ);
    PyObject *tag = hdr != NULL && pl != NULL ? PyObject_CallFunction(mac, "KOO", (unsigned long long)seq, hdr, pl)
                                              : NULL;
    char *t = NULL;
    Py_ssize_t n = 0;
    int rc = tag != NULL && PyBytes_AsStringAndSize(tag, &t, &n) == 0 ? 0 : -1;
    if (rc == 0 && n != MAC_LEN) {
        PyErr_SetString(PyExc_ValueError, "frame MAC of the wrong length");
        rc = -1;
    }
    if (rc == 0)
        memcpy(out, t, MAC_LEN);
    Py_XDECREF(hdr);
    Py_XDECREF(pl);
    Py_XDECREF(tag);
    return rc;
}

/* The tag of the frame at f with a payload of len bytes. */
int frame_tag(PyObject *mac, uint64_t seq, const unsigned char *f, Py_ssize_t len, unsigned char *out) {
    return tag_of(mac, seq, f, f + FRAME_HEAD, len, out);
}

/* Whether the frame's tag is right. -1 on a Python error. */
static int frame_authentic(PyObject *mac, uint64_t seq, const unsigned char *f, Py_ssize_t len) {
    unsigned char want[MAC_LEN];
    if (frame_tag(mac, seq, f, len, want) < 0)
        return -1;
    return tags_equal(want, f + FRAME_HEAD + len);
}

/* Every extent in the activity log's table (a dict keyed by extent)? -1 on a Python error. */
int all_active(PyObject *table, Extents *x) {
    for (Py_ssize_t k = 0; k < x->n; k++) {
        PyObject *e = PyLong_FromUnsignedLongLong(x->v[k]);
        if (e == NULL)
            return -1;
        int in = PyDict_Contains(table, e);
        Py_DECREF(e);
        if (in <= 0)
            return in;
    }
    return 1;
}

/* The frame at f (end - pos bytes available) if it is whole, of type a or b, without flags,
 * the next in sequence and authentic: its payload length; -1 to stop there (the frame parser
 * takes it); -2 on a Python error. */
Py_ssize_t next_frame(const unsigned char *f, Py_ssize_t avail, unsigned int a, unsigned int b,
                             uint64_t seq, PyObject *mac) {
    Py_ssize_t maclen = mac == Py_None ? 0 : MAC_LEN;
    if (avail < FRAME_HEAD + maclen)
        return -1;
    uint64_t len = be32(f + 4);
    if (be16(f) != FRAME_MAGIC || (f[2] != a && f[2] != b) || f[3] != 0 ||
        len > (uint64_t)(avail - FRAME_HEAD - maclen))
        return -1;
    if (be64(f + 8) != seq + 1)
        return -1;
    if (maclen) {
        int ok = frame_authentic(mac, seq + 1, f, (Py_ssize_t)len);
        if (ok <= 0)
            return ok < 0 ? -2 : -1;
    }
    return (Py_ssize_t)len;
}

static PyObject *fast_rx_acks(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    unsigned long long seq;
    unsigned int a, b;
    PyObject *mac;
    if (!PyArg_ParseTuple(args, "y*nnIIKO", &view, &start, &end, &a, &b, &seq, &mac))
        return NULL;
    PyObject *ids = NULL, *result = NULL;
    if (start < 0 || end > view.len || start > end) {
        PyErr_SetString(PyExc_ValueError, "rx_acks: bad bounds");
        goto out;
    }
    ids = PyList_New(0);
    if (ids == NULL)
        goto out;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t pos = start, maclen = mac == Py_None ? 0 : MAC_LEN;
    for (;;) {
        const unsigned char *f = buf + pos;
        Py_ssize_t len = next_frame(f, end - pos, a, b, seq, mac);
        if (len == -2)
            goto out;
        if (len < 0 || len % 8)
            break;
        for (Py_ssize_t k = 0; k < len; k += 8) {
            PyObject *id = PyLong_FromUnsignedLongLong(be64(f + FRAME_HEAD + k));
            if (id == NULL || PyList_Append(ids, id) < 0) {
                Py_XDECREF(id);
                goto out;
            }
            Py_DECREF(id);
        }
        pos += FRAME_HEAD + len + maclen;
        seq++;
    }
    result = Py_BuildValue("(nKO)", pos, seq, ids);
out:
    Py_XDECREF(ids);
    PyBuffer_Release(&view);
    return result;
}

/* What a run of WRITES frames did: their ids and extents (lists), the last settled id carried,
 * a write that failed (None or (id, errno)), the decoder's sequence number. */
typedef struct {
    PyObject *ids, *exts, *failed;
    long long settled;
    uint64_t seq;
} Taken;

/* Take the WRITES frames at b[*pos:end] that the frame parser would hand over as plain writes
 * of type ftype whose extents are all in the activity log's table: authenticate, check, write.
 * Stops before anything else, after a write that failed and after `most` frames. 0, or -1 on
 * a Python error. */
static int take_writes(const unsigned char *b, Py_ssize_t *pos, Py_ssize_t end, unsigned int ftype, PyObject *mac,
                       uint64_t size, int fd, PyObject *table, uint64_t al_extent, Taken *t, Extents *seen,
                       Py_ssize_t most) {
    Py_ssize_t maclen = mac == Py_None ? 0 : MAC_LEN;
    for (Py_ssize_t taken = 0; taken < most && t->failed == Py_None && end - *pos >= FRAME_HEAD; taken++) {
        const unsigned char *f = b + *pos;
        Py_ssize_t len = next_frame(f, end - *pos, ftype, ftype, t->seq, mac);
        if (len == -2)
            return -1;
        if (len < 0)
            break; /* another frame, flags, not all here, forged or out of sequence: the parser's */
        const unsigned char *p = f + FRAME_HEAD;
        Py_ssize_t n = validate(p, len, size);
        if (n < 0) {
            PyErr_Clear();
            break;
        }
        seen->n = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            const unsigned char *e = p + BATCH_HEAD + BATCH_ENTRY * i;
            if (ext_add(seen, be64(e), be32(e + 8), al_extent) < 0)
                return -1;
        }
        int active = all_active(table, seen);
        if (active < 0)
            return -1;
        if (!active)
            break; /* the activity log grows first (persisted): the frame parser's path */
        PyObject *id = PyLong_FromUnsignedLongLong(be64(f + 16));
        PyObject *xt = ext_tuple(seen);
        int err = id != NULL && xt != NULL ? write_all(fd, p, n) : 0;
        *pos += FRAME_HEAD + len + maclen;
        t->seq++;
        t->settled = (long long)be64(f + 24);
        int bad = id == NULL || xt == NULL;
        if (!bad && err) {
            Py_DECREF(t->failed);
            t->failed = Py_BuildValue("(Oi)", id, err);
            bad = t->failed == NULL;
        } else if (!bad) {
            bad = PyList_Append(t->ids, id) < 0 || PyList_Append(t->exts, xt) < 0;
        }
        Py_XDECREF(id);
        Py_XDECREF(xt);
        if (bad)
            return -1;
    }
    return 0;
}

static int taken_init(Taken *t, uint64_t seq) {
    t->ids = PyList_New(0);
    t->exts = PyList_New(0);
    t->failed = Py_None;
    Py_INCREF(Py_None);
    t->settled = -1;
    t->seq = seq;
    return t->ids != NULL && t->exts != NULL ? 0 : -1;
}

static void taken_clear(Taken *t) {
    Py_XDECREF(t->ids);
    Py_XDECREF(t->exts);
    Py_XDECREF(t->failed);
}

static PyObject *fast_rx_writes(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    unsigned long long seq, size, al_extent;
    unsigned int ftype;
    int fd;
    PyObject *mac, *table;
    if (!PyArg_ParseTuple(args, "y*nnIKOKiO!K", &view, &start, &end, &ftype, &seq, &mac, &size, &fd, &PyDict_Type,
                          &table, &al_extent))
        return NULL;
    PyObject *result = NULL;
    Extents seen = {NULL, 0, 0};
    Taken t;
    if (taken_init(&t, seq) < 0)
        goto out;
    if (start < 0 || end > view.len || start > end || al_extent == 0) {
        PyErr_SetString(PyExc_ValueError, "rx_writes: bad bounds");
        goto out;
    }
    Py_ssize_t pos = start;
    if (take_writes(view.buf, &pos, end, ftype, mac, size, fd, table, al_extent, &t, &seen, PY_SSIZE_T_MAX) == 0)
        result = Py_BuildValue("(nKOOLO)", pos, t.seq, t.ids, t.exts, t.settled, t.failed);
out:
    PyMem_Free(seen.v);
    taken_clear(&t);
    PyBuffer_Release(&view);
    return result;
}

/* One acknowledgement frame for ids[from:] of type ack_type, sequence number seq: header |
 * ids | tag (mac(seq, header, ids) unless mac is None). A new bytes object, or NULL. */
static PyObject *ack_frame(PyObject *ids, Py_ssize_t from, unsigned int ack_type, uint64_t seq, PyObject *mac) {
    Py_ssize_t n = PyList_GET_SIZE(ids) - from, maclen = mac == Py_None ? 0 : MAC_LEN;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, FRAME_HEAD + 8 * n + maclen);
    if (frame == NULL)
        return NULL;
    unsigned char *f = (unsigned char *)PyBytes_AS_STRING(frame);
    memset(f, 0, FRAME_HEAD);
    f[0] = FRAME_MAGIC >> 8;
    f[1] = FRAME_MAGIC & 0xff;
    f[2] = (unsigned char)ack_type;
    put32(f + 4, (uint32_t)(8 * n));
    put64(f + 8, seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long id = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(ids, from + i));
        if (id == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(frame);
            return NULL;
        }
        put64(f + FRAME_HEAD + 8 * i, id);
    }
    if (maclen && frame_tag(mac, seq, f, 8 * n, f + FRAME_HEAD + 8 * n) < 0) {
        Py_DECREF(frame);
        return NULL;
    }
    return frame;
}

/* Make room in a receive buffer of len bytes for `need` bytes from its start. */
void make_room(unsigned char *b, Py_ssize_t len, Py_ssize_t *start, Py_ssize_t *end, Py_ssize_t need) {
    if (*start == *end) {
        *start = *end = 0;
    } else if (*start + need > len) {
        memmove(b, b + *start, (size_t)(*end - *start));
        *end -= *start;
        *start = 0;
    }
}

/* Send as much of data[*off:] as the socket takes now; -1 with errno on a failure other than
 * a full socket. */
int send_some(int sock, const char *data, Py_ssize_t len, Py_ssize_t *off) {
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    while (*off < len) {
        ssize_t w = send(sock, data + *off, (size_t)(len - *off), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                rc = -1;
            break;
        }
        *off += w;
    }
    Py_END_ALLOW_THREADS
    return rc;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* serve_writes: a Secondary's steady state without the event loop (see peer.py, serve). */
static PyObject *fast_serve_writes(PyObject *self, PyObject *args) {
    int sock, fd, watch;
    Py_buffer view;
    Py_ssize_t start, end, max_frames;
    unsigned int ftype, ack_type;
    unsigned long long seq, size, al_extent, enc_seq;
    PyObject *mac, *table, *enc_mac;
    double budget;
    int each;
    if (!PyArg_ParseTuple(args, "iw*nnIKOKiO!KIKOidnp", &sock, &view, &start, &end, &ftype, &seq, &mac, &size, &fd,
                          &PyDict_Type, &table, &al_extent, &ack_type, &enc_seq, &enc_mac, &watch, &budget,
                          &max_frames, &each))
        return NULL;
    PyObject *result = NULL, *unsent = NULL;
    const char *why = "budget";
    Extents seen = {NULL, 0, 0};
    Taken t;
    if (taken_init(&t, seq) < 0)
        goto out;
    if (start < 0 || end > view.len || start > end || al_extent == 0 || view.len < MIN_SERVE_BUFFER) {
        PyErr_SetString(PyExc_ValueError, "serve_writes: bad bounds");
        goto out;
    }
    unsigned char *b = view.buf;
    Py_ssize_t maclen = mac == Py_None ? 0 : MAC_LEN;
    double deadline = now_s() + budget;
    for (;;) {
        Py_ssize_t before = PyList_GET_SIZE(t.ids);
        /* each: one frame at a time, each acknowledged once written, so the Primary answers its
         * client for a batch while this replica writes the next (docs/blockrepl.md, "Pipelining");
         * else one acknowledgement for what a read brought */
        if (take_writes(b, &start, end, ftype, mac, size, fd, table, al_extent, &t, &seen, each ? 1 : PY_SSIZE_T_MAX) <
            0)
            goto out;
        int took = PyList_GET_SIZE(t.ids) > before;
        if (took) {
            PyObject *frame = ack_frame(t.ids, before, ack_type, enc_seq + 1, enc_mac);
            if (frame == NULL)
                goto out;
            enc_seq++;
            Py_ssize_t off = 0, len = PyBytes_GET_SIZE(frame);
            int rc = send_some(sock, PyBytes_AS_STRING(frame), len, &off);
            if (off < len) {
                unsent = PyBytes_FromStringAndSize(PyBytes_AS_STRING(frame) + off, len - off);
                Py_DECREF(frame);
                why = rc < 0 ? "closed" : "blocked";
                break;
            }
            Py_DECREF(frame);
        }
        if (t.failed != Py_None) {
            why = "failed";
            break;
        }
        if (took && PyList_GET_SIZE(t.ids) < max_frames)
            continue; /* the next frame, if it is here */
        Py_ssize_t need = FRAME_HEAD + maclen; /* bytes the frame at the head needs */
        if (end - start >= FRAME_HEAD) {        /* one it did not take: the parser's once all here */
            uint64_t whole = FRAME_HEAD + (uint64_t)be32(b + start + 4) + (uint64_t)maclen;
            if ((uint64_t)(end - start) >= whole || whole > (uint64_t)view.len / 2) {
                why = "frame"; /* (one too large for this buffer: at once, the parser reads it into its own) */
                break;
            }
            need = (Py_ssize_t)whole;
        }
        if (PyList_GET_SIZE(t.ids) >= max_frames)
            break;
        double left = deadline - now_s();
        if (left <= 0)
            break;
        make_room(b, view.len, &start, &end, need); /* room for all of it (need <= view.len / 2) */
        struct pollfd pfd[2] = {{.fd = sock, .events = POLLIN}, {.fd = watch, .events = POLLIN}};
        ssize_t got = 0;
        int ready, err = 0;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(pfd, watch >= 0 ? 2 : 1, (int)(left * 1000) + 1);
        if (ready > 0 && pfd[0].revents && !(watch >= 0 && pfd[1].revents)) {
            got = recv(sock, b + end, (size_t)(view.len - end), MSG_DONTWAIT);
            err = got < 0 ? errno : 0;
        }
        Py_END_ALLOW_THREADS
        if (ready < 0 && errno != EINTR) {
            why = "closed";
            break;
        }
        if (ready > 0 && watch >= 0 && pfd[1].revents) {
            why = "loop";
            break;
        }
        if (got == 0 && ready > 0 && pfd[0].revents) {
            why = "closed"; /* the end of the stream, or an error the event loop's read reports */
            break;
        }
        if (got < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
            why = "closed";
            break;
        }
        if (got > 0)
            end += got;
    }
    if (unsent == NULL) {
        unsent = PyBytes_FromStringAndSize(NULL, 0);
        if (unsent == NULL)
            goto out;
    }
    result = Py_BuildValue("(nnKKOOLOOs)", start, end, t.seq, enc_seq, t.ids, t.exts, t.settled, t.failed, unsent,
                           why);
out:
    Py_XDECREF(unsent);
    PyMem_Free(seen.v);
    taken_clear(&t);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", fast_scan, METH_VARARGS, "Frame NBD requests; group runs of plain writes into batches."},
    {"check", fast_check, METH_VARARGS, "Validate a write batch; its activity-log extents."},
    {"apply", fast_apply, METH_VARARGS, "Validate a write batch, then write it to fd."},
    {"replies", fast_replies, METH_VARARGS, "Success replies for the given cookies."},
    {"reads", fast_reads, METH_VARARGS, "Answer the run of plain READs at a buffer's head from a file."},
    {"rx_acks", fast_rx_acks, METH_VARARGS, "The ids of the acknowledgement frames at a buffer's head."},
    {"rx_writes", fast_rx_writes, METH_VARARGS, "Authenticate, check and write the WRITES frames at a buffer's head."},
    {"serve_writes", fast_serve_writes, METH_VARARGS, "Take WRITES frames from a socket until something else comes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_fast", .m_doc = NULL, .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fast(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (primary_add_types(m) < 0 || gmac_add_type(m) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
