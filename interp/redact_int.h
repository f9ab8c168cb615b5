/*
 * Inside the redactor: the forms of a secret (redact_forms.c) and the
 * default patterns (redact_pii.c), shared with redact.c.  Not for the engine,
 * which includes redact.h only.
 */
#ifndef RB_REDACT_INT_H
#define RB_REDACT_INT_H

#include <stddef.h>

/* A set of byte strings (NUL bytes allowed), each added once. */
struct rb_strset {
	char **s;               /* each also NUL-terminated */
	size_t *len;
	size_t n, cap;
	size_t *slot;           /* open addressing: index + 1, 0 when empty */
	size_t nslot;
};

void rb_strset_add(struct rb_strset *ss, const char *p, size_t n);     /* copies p */
void rb_strset_release(struct rb_strset *ss);

/*
 * Adds the forms of the n bytes of v (at least RB_REDACT_MIN_LEN): lits are
 * found whole, frags (hex and base64 at least RB_REDACT_FRAG long) by any
 * RB_REDACT_FRAG-long piece.
 */
void rb_secret_forms(const char *v, size_t n, struct rb_strset *lits, struct rb_strset *frags);

/* base64 of n bytes with padding, alphabet "+/" or "-_" (url); out holds 4 * ((n + 2) / 3) + 1. */
void rb_base64(const unsigned char *in, size_t n, int url, char *out);

/*
 * A default pattern: the regular expression, and what it cannot express.
 * segment finds the next piece of line[*pos, len) that could hold a match,
 * as line[*so, *eo), and moves *pos past it; 0 when there is none, so that
 * regexec never sees the long stretches of a line that cannot match.
 * accept checks a match line[so, eo) against the text around it and returns
 * where the match really ends (at most eo), or 0 to drop it.
 */
struct rb_pii {
	const char *name;
	const char *ere;
	int (*segment)(const char *line, size_t len, size_t *pos, size_t *so, size_t *eo);
	size_t (*accept)(const char *line, size_t len, size_t so, size_t eo);
};

extern const struct rb_pii rb_pii_patterns[];
extern const size_t rb_pii_count;

#endif
