/* What the compiled parts of blockrepl share (_fast.c: the small-write path and the receiving
 * side; _primary.c: the Primary's serve loop; _gmac.c: the frame MAC). */
#ifndef HASTACK_FAST_H
#define HASTACK_FAST_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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

#define FRAME_HEAD 32
#define FRAME_MAGIC 0x4842u
#define MAC_LEN 16
#define MIN_SERVE_BUFFER (256 << 10)

#define SIMPLE_REPLY_MAGIC 0x67446698u
#define STRUCTURED_REPLY_MAGIC 0x668E33EFu

int ext_add(Extents *x, uint64_t off, uint64_t len, uint64_t al_extent);
Py_ssize_t batch_run(const unsigned char *b, Py_ssize_t pos, Py_ssize_t end, uint64_t size, uint32_t max_write,
                     Py_ssize_t max_count, Py_ssize_t max_bytes, Py_ssize_t *data);
int run_extents(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, uint64_t al_extent, Extents *x);
void fill_batch(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, unsigned char *payload,
                unsigned char *cookies);
void make_room(unsigned char *b, Py_ssize_t len, Py_ssize_t *start, Py_ssize_t *end, Py_ssize_t need);
PyObject *ext_tuple(Extents *x);
Py_ssize_t validate(const unsigned char *p, Py_ssize_t len, uint64_t size);
int write_all(int fd, const unsigned char *p, Py_ssize_t n);
void write_replies(unsigned char *o, const unsigned char *cookies, Py_ssize_t n, int structured);
int tags_equal(const unsigned char *a, const unsigned char *b);
int tag_of(PyObject *mac, uint64_t seq, const unsigned char *hdr, const unsigned char *body, Py_ssize_t len,
           unsigned char *out);
int frame_tag(PyObject *mac, uint64_t seq, const unsigned char *f, Py_ssize_t len, unsigned char *out);
int all_active(PyObject *table, Extents *x);
Py_ssize_t next_frame(const unsigned char *f, Py_ssize_t avail, unsigned int a, unsigned int b, uint64_t seq,
                      PyObject *mac);
int send_some(int sock, const char *data, Py_ssize_t len, Py_ssize_t *off);
double now_s(void);
int primary_add_types(PyObject *module);
/* _gmac.c: the tag from a compiled Gmac (0, or -1 on a Python error); 1 if mac is not one. */
int gmac_tag(PyObject *mac, uint64_t seq, const unsigned char *hdr, const unsigned char *body, Py_ssize_t len,
             unsigned char *out);
int gmac_add_type(PyObject *module);

#endif
