/* The compiled inner loops of blockrepl's small-write path (see fastpath.py, which holds the
 * reference implementation in Python and documents the formats).
 *
 *   scan(buf, start, end, size, al_extent, max_write, max_count, max_bytes) -> (items, pos)
 *   check(payload, size, al_extent) -> extents
 *   apply(fd, payload, size) -> count
 *   replies(cookies, structured) -> bytes
 *
 * Nothing here decides policy: scan only frames NBD requests and groups runs of plain writes,
 * check and apply validate a whole batch (apply before writing any of it), replies builds
 * success replies.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define REQ_SIZE 28
#define REQUEST_MAGIC 0x25609513u
#define CMD_WRITE 1
#define MAX_REQUEST (32u << 20)
#define BATCH_HEAD 8
#define BATCH_ENTRY 16
#define MAX_ENTRIES 4096

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }
static inline void put32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static inline void put64(unsigned char *p, uint64_t v) { put32(p, v >> 32); put32(p + 4, (uint32_t)v); }

/* A write that may join a batch: plain (no flags), not empty, small, inside the volume. */
static inline int batchable(const unsigned char *h, uint64_t size, uint32_t max_write) {
    uint16_t flags = be16(h + 4), cmd = be16(h + 6);
    uint64_t off = be64(h + 16);
    uint32_t len = be32(h + 24);
    return cmd == CMD_WRITE && flags == 0 && len > 0 && len <= max_write && off <= size && len <= size - off;
}

/* The distinct activity-log extents of writes, in first-seen order: every one of them (a
 * batch's activity-log check must see them all). */
typedef struct {
    uint64_t *v;
    Py_ssize_t n, cap;
} Extents;

static int ext_add(Extents *x, uint64_t off, uint64_t len, uint64_t al_extent) {
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

static PyObject *ext_tuple(Extents *x) {
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

static PyObject *make_batch(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t data,
                            uint64_t al_extent) {
    PyObject *payload = PyBytes_FromStringAndSize(NULL, BATCH_HEAD + BATCH_ENTRY * n + data);
    PyObject *cookies = PyBytes_FromStringAndSize(NULL, 8 * n);
    PyObject *exts = NULL, *item = NULL;
    Extents seen = {NULL, 0, 0};
    if (payload == NULL || cookies == NULL)
        goto fail;
    unsigned char *pp = (unsigned char *)PyBytes_AS_STRING(payload);
    unsigned char *cp = (unsigned char *)PyBytes_AS_STRING(cookies);
    unsigned char *dp = pp + BATCH_HEAD + BATCH_ENTRY * n;
    put32(pp, (uint32_t)n);
    put32(pp + 4, 0);
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *h = b + pos;
        uint64_t off = be64(h + 16);
        uint32_t len = be32(h + 24);
        unsigned char *e = pp + BATCH_HEAD + BATCH_ENTRY * i;
        put64(e, off);
        put32(e + 8, len);
        put32(e + 12, 0);
        memcpy(cp + 8 * i, h + 8, 8);
        memcpy(dp, h + REQ_SIZE, len);
        dp += len;
        if (ext_add(&seen, off, len, al_extent) < 0)
            goto fail;
        pos += REQ_SIZE + len;
    }
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
            Py_ssize_t n = 0, data = 0, p = pos;
            while (n < max_count && end - p >= REQ_SIZE && be32(b + p) == REQUEST_MAGIC &&
                   batchable(b + p, size, max_write)) {
                uint32_t l = be32(b + p + 24);
                if (end - p - REQ_SIZE < (Py_ssize_t)l || (n > 0 && data + l > max_bytes))
                    break;
                n++;
                data += l;
                p += REQ_SIZE + l;
            }
            PyObject *it = make_batch(b, pos, n, data, al_extent);
            if (it == NULL || PyList_Append(items, it) < 0) {
                Py_XDECREF(it);
                goto out;
            }
            Py_DECREF(it);
            pos = p;
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
static Py_ssize_t validate(const unsigned char *p, Py_ssize_t len, uint64_t size) {
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
    Py_ssize_t n = view.len / 8, each = structured ? 20 : 16;
    out = PyBytes_FromStringAndSize(NULL, n * each);
    if (out == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *c = (const unsigned char *)view.buf;
    for (Py_ssize_t i = 0; i < n; i++, o += each, c += 8) {
        if (structured) {
            put32(o, 0x668E33EFu);
            o[4] = 0; o[5] = 1; /* flags: DONE */
            o[6] = 0; o[7] = 0; /* type: NONE */
            memcpy(o + 8, c, 8);
            put32(o + 16, 0);
        } else {
            put32(o, 0x67446698u);
            put32(o + 4, 0);
            memcpy(o + 8, c, 8);
        }
    }
done:
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", fast_scan, METH_VARARGS, "Frame NBD requests; group runs of plain writes into batches."},
    {"check", fast_check, METH_VARARGS, "Validate a write batch; its activity-log extents."},
    {"apply", fast_apply, METH_VARARGS, "Validate a write batch, then write it to fd."},
    {"replies", fast_replies, METH_VARARGS, "Success replies for the given cookies."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_fast", .m_doc = NULL, .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module); }
