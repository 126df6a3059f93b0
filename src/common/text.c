/* UTF-8 validity of text files (RFC 3629). */
#include "common/common.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 (overlong) or F5..FF */
    }
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

size_t pq_text_invalid_utf8(const char *text, size_t len, size_t *first) {
    const unsigned char *s = (const unsigned char *)text;
    size_t bad = 0;
    if (first) *first = 0;
    for (size_t i = 0; i < len;) {
        const size_t k = utf8_seq(s + i, len - i);
        if (k) {
            i += k;
            continue;
        }
        if (!bad && first) *first = i;
        bad++;
        i++;
    }
    return bad;
}
