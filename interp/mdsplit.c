/*
 * Markdown split into parts of a bounded size (mdsplit.h).  One pass over
 * the lines keeps what is open at each point, a fence (its opening line)
 * and a <details> block (its <summary> line), so that a part can always be
 * closed where it is cut and the next one opened the same way.  The part
 * markers are added once the count is known, in room kept free for them.
 */
#include "mdsplit.h"

#include <stdlib.h>
#include <string.h>

/* Room for "<sub>part I of N</sub>\n\n" and "\n<sub>continued in part I of N</sub>\n". */
enum { RESERVE = 96, MAX_PARTS = 999999 };

static const char details_close[] = "\n</details>\n";

struct open {
	char *fence;            /* the open fence's opening line (no newline), or NULL */
	size_t indent, run;     /* its indentation and its run of fence characters */
	char ch;
	char *details;          /* the open <details> line (no newline), or NULL */
};

/* A fence line (CommonMark): up to 3 spaces, then 3 or more ` or ~; the run's length, or 0. */
static size_t fence_run(const char *l, size_t n, size_t *indent, char *ch)
{
	size_t i = 0;
	while (i < n && i < 4 && l[i] == ' ')
		i++;
	if (i > 3 || i >= n || (l[i] != '`' && l[i] != '~'))
		return 0;
	size_t j = i;
	while (j < n && l[j] == l[i])
		j++;
	if (j - i < 3)
		return 0;
	*indent = i;
	*ch = l[i];
	return j - i;
}

enum effect { NONE, OPENS_FENCE, CLOSES_FENCE, OPENS_DETAILS, CLOSES_DETAILS };

/* What the line l (without its newline) does to what is open. */
static enum effect effect_of(const struct open *o, const char *l, size_t n)
{
	size_t indent;
	char ch;
	size_t run = fence_run(l, n, &indent, &ch);
	if (o->fence) {
		if (!run || ch != o->ch || run < o->run)
			return NONE;
		for (size_t i = indent + run; i < n; i++)
			if (l[i] != ' ' && l[i] != '\t')
				return NONE;
		return CLOSES_FENCE;
	}
	if (run)
		return OPENS_FENCE;
	if (n >= 9 && !strncmp(l, "<details>", 9))
		return OPENS_DETAILS;
	if (n >= 10 && !strncmp(l, "</details>", 10))
		return CLOSES_DETAILS;
	return NONE;
}

static void apply(struct open *o, enum effect e, const char *l, size_t n)
{
	switch (e) {
	case OPENS_FENCE:
		o->run = fence_run(l, n, &o->indent, &o->ch);
		o->fence = rb_xstrndup(l, n);
		break;
	case CLOSES_FENCE:
		free(o->fence);
		o->fence = NULL;
		break;
	case OPENS_DETAILS:
		free(o->details);
		o->details = rb_xstrndup(l, n);
		break;
	case CLOSES_DETAILS:
		free(o->details);
		o->details = NULL;
		break;
	case NONE:
		break;
	}
}

/* The bytes that close what is open, as it would be after the line l with effect e. */
static size_t close_len(const struct open *o, enum effect e, const char *l, size_t n)
{
	int fence = e == OPENS_FENCE || (o->fence && e != CLOSES_FENCE);
	int details = e == OPENS_DETAILS || (o->details && e != CLOSES_DETAILS);
	size_t indent = o->indent, run = o->run;
	char ch;
	if (e == OPENS_FENCE)
		run = fence_run(l, n, &indent, &ch);
	return (fence ? indent + run + 1 : 0) + (details ? sizeof(details_close) - 1 : 0);
}

static void close_open(const struct open *o, struct rb_buf *b)
{
	if (o->fence) {
		for (size_t i = 0; i < o->indent; i++)
			rb_buf_putc(b, ' ');
		for (size_t i = 0; i < o->run; i++)
			rb_buf_putc(b, o->ch);
		rb_buf_putc(b, '\n');
	}
	if (o->details)
		rb_buf_puts(b, details_close);
}

static void reopen(const struct open *o, struct rb_buf *b)
{
	if (o->details) {
		rb_buf_puts(b, o->details);
		rb_buf_puts(b, "\n\n");
	}
	if (o->fence) {
		rb_buf_puts(b, o->fence);
		rb_buf_putc(b, '\n');
	}
}

int rb_md_split(const char *md, size_t len, size_t max, struct rb_strv *parts, char **err)
{
	if (max < RB_MDSPLIT_MIN)
		return rb_fail(err, "a part of %zu bytes is too small: at least %d", max,
			       RB_MDSPLIT_MIN);
	if (len <= max) {
		char *one = rb_xmalloc(len + 2);
		memcpy(one, md, len);
		one[len] = '\0';
		if (!len || md[len - 1] != '\n')
			strcat(one, "\n");
		rb_strv_push(parts, one);
		return 0;
	}
	size_t budget = max - RESERVE;
	struct rb_strv bodies = {0};
	struct open o = {0};
	struct rb_buf cur;
	rb_buf_init(&cur);
	size_t fresh = 0;       /* what a new part starts with: the reopened blocks */
	int rc = -1;
	const char *p = md, *end = md + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *l = p;
		p += n + (nl ? 1 : 0);
		enum effect e = effect_of(&o, l, n);
		for (;;) {
			if (cur.len + n + 1 + close_len(&o, e, l, n) <= budget) {
				rb_buf_add(&cur, l, n);
				rb_buf_putc(&cur, '\n');
				apply(&o, e, l, n);
				break;
			}
			/* Inside a fence a line may be cut, at a character's boundary. */
			size_t room = budget - cur.len;
			size_t closing = close_len(&o, NONE, NULL, 0) + 1;
			if (o.fence && e == NONE && room > closing + 8) {
				size_t k = room - closing;
				while (k > 0 && ((unsigned char)l[k] & 0xC0) == 0x80)
					k--;
				rb_buf_add(&cur, l, k);
				rb_buf_putc(&cur, '\n');
				l += k;
				n -= k;
			} else if (cur.len <= fresh) {
				rb_fail(err, "a line of %zu bytes does not fit in a part of %zu bytes",
					n, max);
				goto out;
			}
			close_open(&o, &cur);
			rb_strv_push(&bodies, rb_buf_detach(&cur));
			reopen(&o, &cur);
			fresh = cur.len;
			if (fresh + close_len(&o, NONE, NULL, 0) + 16 > budget) {
				rb_fail(err, "a part of %zu bytes cannot hold what it must reopen", max);
				goto out;
			}
		}
	}
	if (cur.len)
		rb_strv_push(&bodies, rb_buf_detach(&cur));
	if (bodies.n > MAX_PARTS) {
		rb_fail(err, "more than %d parts", MAX_PARTS);
		goto out;
	}
	for (size_t i = 0; i < bodies.n; i++) {
		struct rb_buf b;
		rb_buf_init(&b);
		if (i)
			rb_buf_printf(&b, "<sub>part %zu of %zu</sub>\n\n", i + 1, bodies.n);
		rb_buf_puts(&b, bodies.v[i]);
		if (i + 1 < bodies.n)
			rb_buf_printf(&b, "\n<sub>continued in part %zu of %zu</sub>\n", i + 2,
				      bodies.n);
		rb_strv_push(parts, rb_buf_detach(&b));
	}
	rc = 0;
out:
	free(o.fence);
	free(o.details);
	rb_buf_release(&cur);
	rb_strv_release(&bodies);
	return rc;
}
