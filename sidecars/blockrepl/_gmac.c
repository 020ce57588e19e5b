/* The frame MAC of wire versions 2 and later, computed with libcrypto (docs/blockrepl.md,
 * "Replication link"): AES-GCM under the direction's key with the frame's sequence number as
 * the 96-bit nonce, the payload as associated data and the 32-byte header as the text; the tag
 * is the MAC. wire.frame_mac holds the same construction with the cryptography package (the
 * reference, and the fallback where this extension is not built); both give the same tags.
 *
 *   Gmac(key) -> mac;  mac(seq, header, payload) -> 16 bytes
 *
 * The compiled paths that check and make frames call it without the interpreter (tag_of).
 */
#include "_fast.h"
#include <openssl/evp.h>

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;
} Gmac;

static PyTypeObject GmacType;

/* 0, or -1 with a Python error set. */
static int gmac_compute(Gmac *g, uint64_t seq, const unsigned char *hdr, Py_ssize_t hlen, const unsigned char *body,
                        Py_ssize_t len, unsigned char *out) {
    unsigned char iv[12] = {0}, text[FRAME_HEAD];
    int n = 0;
    put64(iv + 4, seq);
    if (hlen > (Py_ssize_t)sizeof(text) || len > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "frame MAC: a header of at most 32 bytes, a payload under 2 GiB");
        return -1;
    }
    if (EVP_EncryptInit_ex(g->ctx, NULL, NULL, NULL, iv) != 1 ||
        (len > 0 && EVP_EncryptUpdate(g->ctx, NULL, &n, body, (int)len) != 1) ||
        (hlen > 0 && EVP_EncryptUpdate(g->ctx, text, &n, hdr, (int)hlen) != 1) ||
        EVP_EncryptFinal_ex(g->ctx, text, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, MAC_LEN, out) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "frame MAC: libcrypto's AES-GCM failed");
        return -1;
    }
    return 0;
}

int gmac_tag(PyObject *mac, uint64_t seq, const unsigned char *hdr, const unsigned char *body, Py_ssize_t len,
             unsigned char *out) {
    if (!Py_IS_TYPE(mac, &GmacType))
        return 1;
    return gmac_compute((Gmac *)mac, seq, hdr, FRAME_HEAD, body, len, out);
}

static int gmac_init(Gmac *g, PyObject *args, PyObject *kw) {
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "y*", &key))
        return -1;
    const EVP_CIPHER *cipher = key.len == 16 ? EVP_aes_128_gcm() : key.len == 24 ? EVP_aes_192_gcm()
                               : key.len == 32 ? EVP_aes_256_gcm() : NULL;
    int rc = -1;
    if (cipher == NULL) {
        PyErr_SetString(PyExc_ValueError, "frame MAC key: 16, 24 or 32 bytes");
    } else {
        if (g->ctx == NULL)
            g->ctx = EVP_CIPHER_CTX_new();
        if (g->ctx == NULL || EVP_EncryptInit_ex(g->ctx, cipher, NULL, key.buf, NULL) != 1)
            PyErr_SetString(PyExc_RuntimeError, "frame MAC: libcrypto could not set up AES-GCM");
        else
            rc = 0;
    }
    PyBuffer_Release(&key);
    return rc;
}

static void gmac_dealloc(Gmac *g) {
    EVP_CIPHER_CTX_free(g->ctx); /* clears the key schedule */
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyObject *gmac_call(Gmac *g, PyObject *args, PyObject *kw) {
    PyObject *n;
    Py_buffer hdr, body;
    if (g->ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "frame MAC without a key");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!y*y*", &PyLong_Type, &n, &hdr, &body))
        return NULL;
    unsigned long long seq = PyLong_AsUnsignedLongLong(n); /* OverflowError outside 0..2**64-1 */
    if (seq == (unsigned long long)-1 && PyErr_Occurred()) {
        PyBuffer_Release(&hdr);
        PyBuffer_Release(&body);
        return NULL;
    }
    unsigned char tag[MAC_LEN];
    int rc = gmac_compute(g, seq, hdr.buf, hdr.len, body.buf, body.len, tag);
    PyBuffer_Release(&hdr);
    PyBuffer_Release(&body);
    return rc < 0 ? NULL : PyBytes_FromStringAndSize((const char *)tag, MAC_LEN);
}

static PyTypeObject GmacType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hastack_blockrepl._fast.Gmac",
    .tp_basicsize = sizeof(Gmac),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The frame MAC of wire versions 2 and later: mac(seq, header, payload) -> 16 bytes.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)gmac_init,
    .tp_dealloc = (destructor)gmac_dealloc,
    .tp_call = (ternaryfunc)gmac_call,
};

int gmac_add_type(PyObject *m) {
    return PyModule_AddType(m, &GmacType); /* under its tp_name's last part */
}
