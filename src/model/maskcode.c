/* Coded keep masks: the urn model under a binary range coder (format in maskcode.h). */
#include "model/maskcode.h"

#include <string.h>

#define TOP ((uint32_t)1 << 24) /* the range is renormalised to >= 2^24 after every decision */

static int bit(const uint8_t *row, int64_t c) {
    return (row[c >> 3] >> (c & 7)) & 1;
}

/* The share of the range given to outcome 1 when p(1) = k / n (0 < k < n): floor(range * k / n),
 * exact (no quantised probability). Outcome 1 loses less than one unit of a range >= 2^24, i.e.
 * at most -log2(1 - n / (k 2^24)) bits, outcome 0 loses nothing; over a row whose kept weights
 * are coded with k = kept .. 1 that is at most 1.45 cols (1 + ln cols) / 2^24 bits
 * (cols = 14336: 0.013 bits per row; 65536: 0.07). The clamp to 1..range-1 acts only past 2^24
 * columns, where the coder stays correct and merely loses its precision; past 2^32 columns k
 * and n are halved first, so range * k never overflows. */
static uint32_t split(uint32_t range, uint64_t k, uint64_t n) {
    while (n >> 32)
        n >>= 1, k >>= 1;
    const uint64_t b = (uint64_t)range * k / n;
    return b < 1 ? 1 : b >= range ? range - 1 : (uint32_t)b;
}

/* ---------------------------------------------------------------- encoder */

typedef struct enc {
    uint64_t low;     /* the interval's start: 32 bits and a carry into the held-back bytes */
    uint32_t range;   /* its width, >= 2^24 between decisions */
    uint8_t cache;    /* the last decided byte, held back because a carry may still reach it */
    uint64_t pending; /* bytes held back: the cache and the 0xFF bytes after it */
    int skip;         /* the stream's first byte is always 0 (low + range <= 2^32): not written */
    uint8_t *out;     /* NULL: count only */
    size_t cap, n;
} enc;

static void put(enc *e, uint8_t b) {
    if (e->skip) {
        e->skip = 0;
        return;
    }
    if (e->out && e->n < e->cap) e->out[e->n] = b;
    e->n++;
}

/* Moves low's top byte out (LZMA's ShiftLow): a byte below 0xFF, or any byte once a carry has
 * come, decides the bytes held back; an 0xFF byte waits for a possible carry. */
static void shift_low(enc *e) {
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32)) {
        const uint8_t carry = (uint8_t)(e->low >> 32);
        uint8_t t = e->cache;
        do {
            put(e, (uint8_t)(t + carry));
            t = 0xFF;
        } while (--e->pending);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static void enc_start(enc *e) {
    e->low = 0, e->range = 0xFFFFFFFFu, e->cache = 0, e->pending = 1, e->skip = 1;
}

/* Outcome b (1 with probability k / n, 0 < k < n): 1 takes the lower part of the range. */
static void enc_bit(enc *e, int b, uint64_t k, uint64_t n) {
    const uint32_t s = split(e->range, k, n);
    if (b)
        e->range = s;
    else
        e->low += s, e->range -= s;
    while (e->range < TOP) {
        e->range <<= 8;
        shift_low(e);
    }
}

/* v uniform in 0..N-1 by halving: each step takes the lower half with probability its share,
 * so the steps cost log2 N bits together (N need not be a power of two). */
static void enc_uniform(enc *e, uint64_t v, uint64_t N) {
    uint64_t lo = 0, hi = N;
    while (hi - lo > 1) {
        const uint64_t mid = lo + (hi - lo) / 2, b = v < mid;
        enc_bit(e, (int)b, mid - lo, hi - lo);
        if (b)
            hi = mid;
        else
            lo = mid;
    }
}

/* Ends a stream with low rounded up to a multiple of 2^24 (inside the interval: range >= 2^24),
 * written up to its top byte; the decoder reads the 3 zero bytes after it past the end. So a
 * block costs less than 8 bits more than its code length. A multiple of 2^32, when the interval
 * holds one, would save that byte but make a stream cut by its last byte look complete. */
static void enc_finish(enc *e) {
    e->low = (e->low + 0xFFFFFFu) & ~(uint64_t)0xFFFFFFu;
    shift_low(e);
    shift_low(e); /* low is now 0: the held-back bytes go out */
}

static void enc_row(enc *e, const uint8_t *row, int64_t cols) {
    int64_t kept = 0;
    for (int64_t c = 0; c < cols; c++)
        kept += bit(row, c);
    enc_uniform(e, (uint64_t)kept, (uint64_t)cols + 1);
    int64_t k = kept, n = cols;
    for (int64_t c = 0; k > 0 && k < n; c++, n--) { /* the rest is forced once k is 0 or n */
        const int b = bit(row, c);
        enc_bit(e, b, (uint64_t)k, (uint64_t)n);
        k -= b;
    }
}

int64_t pq__kmask_encode(const uint8_t *bm, int64_t rows, int64_t cols, int64_t R, uint8_t *out, size_t cap,
                         int32_t *idx) {
    enc e = {.out = out, .cap = cap};
    const int64_t mrow = (cols + 7) / 8, nb = pq__kmask_blocks(rows, R);
    if (idx) idx[0] = (int32_t)R;
    for (int64_t b = 0; b < nb; b++) {
        enc_start(&e);
        for (int64_t r = b * R; r < rows && r < (b + 1) * R; r++)
            enc_row(&e, bm + r * mrow, cols);
        enc_finish(&e);
        if ((out && e.n > cap) || (idx && e.n > INT32_MAX)) return -1;
        if (idx && b + 1 < nb) idx[b + 1] = (int32_t)e.n; /* where block b + 1 starts */
    }
    return (int64_t)e.n;
}

size_t pq__kmask_size(const uint8_t *bm, int64_t rows, int64_t cols, int64_t R) {
    return (size_t)pq__kmask_encode(bm, rows, cols, R, NULL, 0, NULL);
}

/* ---------------------------------------------------------------- decoder */

typedef struct dec {
    uint32_t range, code; /* code = value - low in the current 32-bit window, < range */
    uint32_t win;         /* the last 4 bytes read: the window of the value itself */
    const uint8_t *in;
    size_t n, pos; /* pos counts every byte read, those past the end (zeros) too */
} dec;

static uint32_t next(dec *d) {
    const uint32_t b = d->pos < d->n ? d->in[d->pos] : 0;
    d->pos++;
    d->win = d->win << 8 | b;
    return b;
}

/* 0 when the first 4 bytes are no value inside the initial interval. */
static int dec_start(dec *d, const uint8_t *in, size_t n) {
    *d = (dec){.range = 0xFFFFFFFFu, .in = in, .n = n};
    for (int i = 0; i < 4; i++)
        d->code = d->code << 8 | next(d);
    return d->code < d->range;
}

static int dec_bit(dec *d, uint64_t k, uint64_t n) {
    const uint32_t s = split(d->range, k, n);
    const int b = d->code < s;
    if (b)
        d->range = s;
    else
        d->code -= s, d->range -= s;
    while (d->range < TOP) {
        d->range <<= 8;
        d->code = d->code << 8 | next(d);
    }
    return b;
}

static uint64_t dec_uniform(dec *d, uint64_t N) {
    uint64_t lo = 0, hi = N;
    while (hi - lo > 1) {
        const uint64_t mid = lo + (hi - lo) / 2;
        if (dec_bit(d, mid - lo, hi - lo))
            hi = mid;
        else
            lo = mid;
    }
    return lo;
}

/* The count can never exceed cols (it is a choice among 0..cols) and the urn keeps exactly it. */
static void dec_row(dec *d, uint8_t *row, int64_t cols) {
    int64_t k = (int64_t)dec_uniform(d, (uint64_t)cols + 1), n = cols, c = 0;
    for (; k > 0 && k < n; c++, n--)
        if (dec_bit(d, (uint64_t)k, (uint64_t)n)) {
            row[c >> 3] |= (uint8_t)(1u << (c & 7));
            k--;
        }
    for (; k > 0; c++, k--) /* every column left is kept */
        row[c >> 3] |= (uint8_t)(1u << (c & 7));
}

/* 1 when the stream ends exactly as enc_finish ends it: the value's window is low (= value -
 * code) rounded up to a multiple of 2^24, and the stream stops after its top byte. A stream cut
 * or extended, or corrupt, fails this unless its bytes happen to fit (about 1 in 256). */
static int dec_end_ok(const dec *d) {
    const uint32_t low = d->win - d->code;
    return d->win == (uint32_t)(((uint64_t)low + 0xFFFFFFu) & 0xFF000000u) && d->n == d->pos - 3;
}

int pq__kmask_decode_block(const uint8_t *in, size_t nbytes, int64_t rows, int64_t cols, uint8_t *bm) {
    const int64_t mrow = (cols + 7) / 8;
    memset(bm, 0, (size_t)(rows * mrow));
    dec d;
    if (!dec_start(&d, in, nbytes)) return 1;
    for (int64_t r = 0; r < rows; r++)
        dec_row(&d, bm + r * mrow, cols);
    return dec_end_ok(&d) ? 0 : 1;
}

/* ---------------------------------------------------------------- the checked layer decoder */

static int64_t idx_at(const pq__tensor *ti, int64_t i) {
    int32_t v;
    memcpy(&v, (const uint8_t *)ti->data + 4 * i, 4);
    return v;
}

/* Where block b of nb starts in .kmask [nbytes], and where it ends. */
static int64_t block_start(const pq__tensor *ti, int64_t b) {
    return b ? idx_at(ti, b) : 0;
}
static int64_t block_end(const pq__tensor *ti, int64_t b, int64_t nb, size_t nbytes) {
    return b + 1 < nb ? idx_at(ti, b + 1) : (int64_t)nbytes;
}

/* Checks .kmask_idx: R > 0, one entry per block (at least one), block starts in order within
 * .kmask. */
static pq_status check_index(pq_ctx *ctx, const char *path, const char *base, const pq__tensor *ti, size_t nbytes,
                             int64_t rows, int64_t *R) {
    if (ti->dtype != PQ_DTYPE_I32 || ti->n_dims != 1 || ti->shape[0] < 1 || ti->nbytes / 4 < (size_t)ti->shape[0])
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.kmask_idx': expected I32 [blocks]", path, base);
    *R = idx_at(ti, 0);
    if (*R < 1)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.kmask_idx': %lld rows per block (entry 0)", path, base,
                        (long long)*R);
    const int64_t nb = pq__kmask_blocks(rows, *R), want = nb > 0 ? nb : 1;
    if (ti->shape[0] != want)
        return pq__fail(ctx, PQ_ERR_FORMAT,
                        "%s: tensor '%s.kmask_idx': %lld entries, %lld rows in blocks of %lld need %lld", path, base,
                        (long long)ti->shape[0], (long long)rows, (long long)*R, (long long)want);
    for (int64_t b = 1; b < nb; b++) {
        const int64_t s = block_start(ti, b), prev = block_start(ti, b - 1);
        if (s < prev)
            return pq__fail(ctx, PQ_ERR_FORMAT,
                            "%s: tensor '%s.kmask_idx': block %lld starts at byte %lld, before block %lld (%lld)",
                            path, base, (long long)b, (long long)s, (long long)(b - 1), (long long)prev);
        if ((size_t)s > nbytes)
            return pq__fail(ctx, PQ_ERR_FORMAT,
                            "%s: tensor '%s.kmask_idx': block %lld starts at byte %lld, past the end of '%s.kmask' "
                            "(%zu bytes)",
                            path, base, (long long)b, (long long)s, base, nbytes);
    }
    return PQ_OK;
}

pq_status pq__kmask_decode(pq_ctx *ctx, const char *path, const char *base, const pq__tensor *tk,
                           const pq__tensor *ti, int64_t rows, int64_t cols, uint8_t *bm) {
    if (tk->dtype != PQ_DTYPE_U8 || tk->n_dims != 1 || tk->shape[0] < 0 || tk->nbytes < (size_t)tk->shape[0])
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.kmask': expected U8 [nbytes]", path, base);
    if (!ti) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.kmask' without '%s.kmask_idx'", path, base, base);
    const size_t nbytes = (size_t)tk->shape[0];
    int64_t R;
    pq_status st = check_index(ctx, path, base, ti, nbytes, rows, &R);
    if (st != PQ_OK) return st;
    const int64_t nb = pq__kmask_blocks(rows, R), mrow = (cols + 7) / 8;
    const uint8_t *in = tk->data;
    int64_t bad = nb; /* the first block that does not decode */
#pragma omp parallel for num_threads(pq__threads(ctx)) schedule(dynamic, 1) reduction(min : bad) if (nb > 1)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t s = block_start(ti, b), e = block_end(ti, b, nb, nbytes), r0 = b * R;
        const int64_t nr = rows - r0 < R ? rows - r0 : R;
        if (pq__kmask_decode_block(in + s, (size_t)(e - s), nr, cols, bm + r0 * mrow)) bad = b < bad ? b : bad;
    }
    if (bad == nb) return PQ_OK;
    return pq__fail(ctx, PQ_ERR_FORMAT,
                    "%s: tensor '%s.kmask': rows %lld..%lld (block %lld) do not decode: stream truncated or corrupt",
                    path, base, (long long)(bad * R), (long long)((bad + 1) * R < rows ? (bad + 1) * R : rows) - 1,
                    (long long)bad);
}
