/* Answer extraction for generative tasks: GSM8K (number after "####" in the target, last
 * number in the output, as the harness's flexible-extract), MATH (last \boxed{}, Minerva-
 * style normalisation, simplified), BBH (exact match, trimmed, case-insensitive). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static void copy_trim(const char *b, const char *e, char *out, size_t n) {
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    size_t k = (size_t)(e - b);
    if (k >= n) k = n - 1;
    memcpy(out, b, k);
    out[k] = 0;
}

/* Removes ',' and '$', drops a trailing '.', in place. */
static void norm_number(char *s) {
    char *w = s;
    for (char *r = s; *r; r++)
        if (*r != ',' && *r != '$') *w++ = *r;
    *w = 0;
    size_t k = strlen(s);
    while (k > 0 && s[k - 1] == '.')
        s[--k] = 0;
}

int pq__extract_last_number(const char *text, char *out, size_t n) {
    const char *best_b = NULL, *best_e = NULL;
    const char *p = text;
    while (*p) {
        if (isdigit((unsigned char)*p)) {
            const char *b = p;
            if (b > text && b[-1] == '-') b--;
            while (*p && (isdigit((unsigned char)*p) || ((*p == ',' || *p == '.') && isdigit((unsigned char)p[1]))))
                p++;
            best_b = b;
            best_e = p;
        } else {
            p++;
        }
    }
    if (!best_b) {
        if (n) out[0] = 0;
        return 0;
    }
    copy_trim(best_b, best_e, out, n);
    norm_number(out);
    return 1;
}

int pq__extract_gsm8k_target(const char *answer, char *out, size_t n) {
    const char *h = strstr(answer, "####");
    if (!h) return pq__extract_last_number(answer, out, n);
    h += 4;
    const char *e = h + strlen(h);
    copy_trim(h, e, out, n);
    norm_number(out);
    return out[0] != 0;
}

/* +1 for an opening brace, -1 for a closing one, 0 otherwise. */
static int brace_step(char c) {
    return (c == '{') - (c == '}');
}

/* The brace that closes the one at open (NULL when unbalanced). */
static const char *closing_brace(const char *open) {
    int depth = 0;
    for (const char *q = open; *q; q++)
        if ((depth += brace_step(*q)) == 0) return q;
    return NULL;
}

/* The last "\boxed" or "\fbox" in text and the length of its keyword; NULL if none. */
static const char *last_box(const char *text, size_t *kwlen) {
    static const char *const kws[] = {"\\boxed", "\\fbox"};
    const char *last = NULL;
    for (int k = 0; k < 2; k++)
        for (const char *p = strstr(text, kws[k]); p; p = strstr(p + 1, kws[k]))
            if (!last || p > last) {
                last = p;
                *kwlen = strlen(kws[k]);
            }
    return last;
}

int pq__extract_boxed(const char *text, char *out, size_t n) {
    size_t kwlen = 0;
    const char *last = last_box(text, &kwlen);
    if (n) out[0] = 0;
    if (!last) return 0;
    const char *p = last + kwlen;
    while (*p == ' ')
        p++;
    if (brace_step(*p) != 1) {
        /* "\boxed 5" form: up to the next '$' or space */
        const char *e = p;
        while (*e && *e != '$' && !isspace((unsigned char)*e))
            e++;
        copy_trim(p, e, out, n);
        return out[0] != 0;
    }
    const char *q = closing_brace(p);
    if (!q) return 0; /* unbalanced */
    copy_trim(p + 1, q, out, n);
    return 1;
}

void pq__extract_math_answer(const char *output, char *out, size_t n) {
    if (pq__extract_boxed(output, out, n)) return;
    /* no box: what follows "final answer is", up to ". I hope" (the few-shot examples' phrasing) */
    const char *fa = strstr(output, "final answer is");
    snprintf(out, n, "%s", fa ? fa + 15 : "");
    char *dot = strstr(out, ". I hope");
    if (dot) *dot = 0;
}

int pq__answer_score(pq__extract_kind kind, const char *output, const char *target) {
    char a[512], b[512], na[512];
    switch (kind) {
    case PQ__EXTRACT_GSM8K: return pq__extract_last_number(output, a, sizeof a) && pq__answers_equal(a, target);
    case PQ__EXTRACT_MATH:
        pq__extract_math_answer(output, a, sizeof a);
        pq__math_normalize(a, na, sizeof na);
        pq__math_normalize(target, b, sizeof b);
        return na[0] && pq__answers_equal(na, b);
    default: return pq__exact_match(output, target);
    }
}

const char *pq__answer_method(pq__extract_kind kind) {
    switch (kind) {
    case PQ__EXTRACT_GSM8K:
        return "generative greedy: last number of the output vs the \"####\" number (flexible-extract)";
    case PQ__EXTRACT_MATH: return "generative greedy: last \\boxed{} normalised vs answer";
    default: return "generative greedy: exact match (trimmed, case-insensitive)";
    }
}

/* Replaces every occurrence of a by b in s (b not longer than a). */
static void replace_all(char *s, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *p;
    while ((p = strstr(s, a))) {
        memmove(p + lb, p + la, strlen(p + la) + 1);
        memcpy(p, b, lb);
        s = p + lb;
    }
}

/* \text{X} / \textbf{X} / \mbox{X} -> X */
static void unwrap(char *s, const char *cmd) {
    size_t lc = strlen(cmd);
    char *p;
    while ((p = strstr(s, cmd)) && brace_step(p[lc]) == 1) {
        char *q = (char *)closing_brace(p + lc);
        if (!q) return;
        memmove(q, q + 1, strlen(q + 1) + 1);           /* drop the closing brace */
        memmove(p, p + lc + 1, strlen(p + lc + 1) + 1); /* drop "\cmd" and the opening brace */
    }
}

void pq__math_normalize(const char *in, char *out, size_t n) {
    size_t k = strlen(in);
    char *s = malloc(k + 1);
    if (!s) {
        copy_trim(in, in + k, out, n);
        return;
    }
    memcpy(s, in, k + 1);
    /* "x = 5" -> "5" when the left side is a short name */
    char *eq = strchr(s, '=');
    if (eq && !strchr(eq + 1, '=') && eq - s <= 3) memmove(s, eq + 1, strlen(eq + 1) + 1);
    unwrap(s, "\\text");
    unwrap(s, "\\textbf");
    unwrap(s, "\\mbox");
    unwrap(s, "\\mathrm");
    static const char *const drop[] = {"\\left", "\\right", "\\!",       "\\,", "\\;", "\\:",           "\\$",
                                       "$",      "^\\circ", "^{\\circ}", "\\%", "%",   "\\displaystyle"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        replace_all(s, drop[i], "");
    replace_all(s, "\\dfrac", "\\frac");
    replace_all(s, "\\tfrac", "\\frac");
    /* remove spaces */
    char *w = s;
    for (char *r = s; *r; r++)
        if (!isspace((unsigned char)*r)) *w++ = *r;
    *w = 0;
    /* \frac12 -> \frac{1}{2}, \sqrt2 -> \sqrt{2} */
    pq__str t = {0};
    for (char *r = s; *r;) {
        if (!strncmp(r, "\\frac", 5) && r[5] && brace_step(r[5]) != 1) {
            pq__str_adds(&t, "\\frac{");
            pq__str_add(&t, r + 5, 1);
            pq__str_adds(&t, "}");
            r += 6;
            if (*r && brace_step(*r) != 1) {
                pq__str_adds(&t, "{");
                pq__str_add(&t, r, 1);
                pq__str_adds(&t, "}");
                r++;
            }
        } else if (!strncmp(r, "\\sqrt", 5) && r[5] && brace_step(r[5]) != 1 && r[5] != '[') {
            pq__str_adds(&t, "\\sqrt{");
            pq__str_add(&t, r + 5, 1);
            pq__str_adds(&t, "}");
            r += 6;
        } else {
            pq__str_add(&t, r, 1);
            r++;
        }
    }
    const char *res = t.p ? t.p : "";
    size_t rl = strlen(res);
    while (rl > 0 && res[rl - 1] == '.')
        rl--;
    /* "0.5" vs ".5": a leading "." gets a 0 */
    if (res[0] == '.' && n > 1) {
        out[0] = '0';
        copy_trim(res, res + rl, out + 1, n - 1);
    } else {
        copy_trim(res, res + rl, out, n);
    }
    /* plain numbers: "5.0" -> "5", "1,000" -> "1000" */
    char num[256];
    snprintf(num, sizeof num, "%s", out);
    norm_number(num);
    char *end = NULL;
    double v = num[0] ? strtod(num, &end) : 0;
    if (num[0] && end && !*end && isfinite(v) && v == floor(v) && fabs(v) < 1e15) snprintf(out, n, "%.0f", v);
    free(t.p);
    free(s);
}

int pq__answers_equal(const char *a, const char *b) {
    if (!strcmp(a, b)) return 1;
    char *ea = NULL, *eb = NULL;
    if (!*a || !*b) return 0;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    if (ea && !*ea && eb && !*eb) return x == y || fabs(x - y) <= 1e-9 * fmax(1.0, fabs(y));
    return 0;
}

int pq__exact_match(const char *output, const char *target) {
    const char *b = output, *e = output + strlen(output);
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    const char *tb = target, *te = target + strlen(target);
    while (tb < te && isspace((unsigned char)*tb))
        tb++;
    while (te > tb && isspace((unsigned char)te[-1]))
        te--;
    if (e - b != te - tb) return 0;
    for (; b < e; b++, tb++)
        if (tolower((unsigned char)*b) != tolower((unsigned char)*tb)) return 0;
    return 1;
}
