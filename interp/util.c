/*
 * Checked allocation, the document arena, string buffers and the
 * "did you mean" distance, hex and SHA-256.  Pure helpers: no I/O except
 * rb_read_file and rb_sha256_file.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

static void oom(void)
{
	fputs("runbook: fatal: out of memory\n", stderr);
	abort();
}

void *rb_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *rb_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *rb_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *rb_xstrdup(const char *s)
{
	return rb_xstrndup(s, strlen(s));
}

char *rb_xstrndup(const char *s, size_t n)
{
	char *p = rb_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *rb_xvasprintf(const char *fmt, va_list ap)
{
	va_list cp;
	va_copy(cp, ap);
	int n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		oom();
	char *p = rb_xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *rb_xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = rb_xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

void rb_grow(void *v, size_t *cap, size_t need, size_t sz)
{
	void **pv = v;
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 8;
	while (c < need)
		c *= 2;
	*pv = rb_xrealloc(*pv, c * sz);
	*cap = c;
}

/* Arena: blocks of at least 64 KiB, objects aligned to max_align_t. */
struct rb_arena_block {
	struct rb_arena_block *next;
	size_t size;
	_Alignas(max_align_t) unsigned char data[];
};

enum { ARENA_BLOCK = 64 * 1024 };

void rb_arena_init(struct rb_arena *a)
{
	memset(a, 0, sizeof(*a));
}

void rb_arena_release(struct rb_arena *a)
{
	struct rb_arena_block *b = a->head;
	while (b) {
		struct rb_arena_block *next = b->next;
		free(b);
		b = next;
	}
	rb_arena_init(a);
}

void *rb_arena_alloc(struct rb_arena *a, size_t n)
{
	size_t align = _Alignof(max_align_t);
	n = (n + align - 1) & ~(align - 1);
	if (!a->head || a->used + n > a->head->size) {
		size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		struct rb_arena_block *b = rb_xmalloc(sizeof(*b) + size);
		b->size = size;
		b->next = a->head;
		a->head = b;
		a->used = 0;
		a->total += size;
	}
	void *p = a->head->data + a->used;
	a->used += n;
	memset(p, 0, n);
	return p;
}

char *rb_arena_strndup(struct rb_arena *a, const char *s, size_t n)
{
	char *p = rb_arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void rb_buf_init(struct rb_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void rb_buf_release(struct rb_buf *b)
{
	free(b->s);
	rb_buf_init(b);
}

void rb_buf_add(struct rb_buf *b, const char *s, size_t n)
{
	rb_grow(&b->s, &b->cap, b->len + n + 1, 1);
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void rb_buf_puts(struct rb_buf *b, const char *s)
{
	rb_buf_add(b, s, strlen(s));
}

void rb_buf_putc(struct rb_buf *b, char c)
{
	rb_buf_add(b, &c, 1);
}

void rb_buf_printf(struct rb_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = rb_xvasprintf(fmt, ap);
	va_end(ap);
	rb_buf_puts(b, s);
	free(s);
}

char *rb_buf_detach(struct rb_buf *b)
{
	char *s = b->s ? b->s : rb_xstrdup("");
	rb_buf_init(b);
	return s;
}

size_t rb_edit_distance(const char *a, const char *b, size_t max)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return max + 1;
	if ((la > lb ? la - lb : lb - la) > max)
		return max + 1;
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0], best;
		row[0] = i;
		best = row[0];
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t v = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < v)
				v = up + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			row[j] = v;
			diag = up;
			if (v < best)
				best = v;
		}
		if (best > max)
			return max + 1;
	}
	return row[lb] > max ? max + 1 : row[lb];
}

const char *rb_suggest(const char *word, const char *const *cands, size_t n)
{
	/* Longer words tolerate more typos: 1 up to 3 letters, 2 up to 6, then 3. */
	size_t wl = strlen(word), max = wl <= 3 ? 1 : wl <= 6 ? 2 : 3;
	const char *best = NULL;
	size_t bestd = max + 1;
	for (size_t i = 0; i < n; i++) {
		size_t d = rb_edit_distance(word, cands[i], max);
		if (d < bestd && d < wl) {
			bestd = d;
			best = cands[i];
		}
	}
	return best;
}

int rb_read_file(const char *path, size_t max, char **out, size_t *len, char **err)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		*err = rb_xasprintf("cannot open '%s': %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		*err = rb_xasprintf("'%s' is a directory", path);
		close(fd);
		return -1;
	}
	struct rb_buf b;
	rb_buf_init(&b);
	char chunk[65536];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*err = rb_xasprintf("cannot read '%s': %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		if (b.len + (size_t)r > max) {
			/* One byte past the limit tells the caller it was crossed. */
			rb_buf_add(&b, chunk, max + 1 - b.len);
			break;
		}
		rb_buf_add(&b, chunk, (size_t)r);
	}
	if (fd != 0)
		close(fd);
	*len = b.len;
	*out = rb_buf_detach(&b);
	return 0;
fail:
	if (fd != 0)
		close(fd);
	rb_buf_release(&b);
	return -1;
}

void rb_strv_push(struct rb_strv *sv, char *s)
{
	rb_grow(&sv->v, &sv->cap, sv->n + 2, sizeof(*sv->v));
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL;
}

void rb_strv_release(struct rb_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	memset(sv, 0, sizeof(*sv));
}

char *const *rb_strv_terminated(struct rb_strv *sv)
{
	rb_grow(&sv->v, &sv->cap, sv->n + 1, sizeof(*sv->v));
	sv->v[sv->n] = NULL;
	return sv->v;
}

size_t rb_utf8_check(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		unsigned c = p[i];
		size_t n;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			n = 1, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return i;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (p[i + k] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += n + 1;
	}
	return len;
}

/*
 * Characters JSON leaves as they are that would mislead on a terminal: the
 * C1 controls (U+0080-U+009F), and the line separators and bidirectional
 * controls (U+200E, U+200F, U+2028-U+202E, U+2066-U+2069) that can make
 * text show in another order than it is.  Their length in bytes, or 0.
 */
size_t rb_utf8_unsafe(const unsigned char *s, size_t n, uint32_t *cp)
{
	if (n >= 2 && s[0] == 0xc2 && s[1] < 0xa0) {
		*cp = s[1];
		return 2;
	}
	if (n >= 3 && s[0] == 0xe2 && (s[1] == 0x80 || s[1] == 0x81)) {
		*cp = 0x2000 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
		if (*cp == 0x200e || *cp == 0x200f || (*cp >= 0x2028 && *cp <= 0x202e) ||
		    (*cp >= 0x2066 && *cp <= 0x2069))
			return 3;
	}
	return 0;
}

char *rb_utf8_lossy(const char *s, size_t len, size_t *outlen)
{
	struct rb_buf b;
	rb_buf_init(&b);
	size_t i = 0;
	while (i < len) {
		size_t ok = rb_utf8_check(s + i, len - i);
		rb_buf_add(&b, s + i, ok);
		i += ok;
		if (i < len) {
			rb_buf_puts(&b, "\xEF\xBF\xBD");     /* U+FFFD */
			i++;
		}
	}
	if (outlen)
		*outlen = b.len;
	return rb_buf_detach(&b);
}

/* The length of the valid UTF-8 character at p (n bytes left), or 0. */
static size_t utf8_one(const unsigned char *p, size_t n)
{
	size_t k = (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
		 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
	return k && k <= n && rb_utf8_check((const char *)p, k) == k ? k : 0;
}

void rb_visible_add(struct rb_buf *b, const char *s, size_t len, unsigned keep)
{
	static const char named[] = "0......abtnvfr";     /* \0, \a to \r by their code */
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		uint32_t cp;
		size_t u;
		/* The run that needs nothing, written at once. */
		while (j < len && p[j] >= 0x20 && p[j] < 0x7f)
			j++;
		rb_buf_add(b, s + i, j - i);
		if ((i = j) == len)
			break;
		unsigned c = p[i];
		if ((c == '\t' && (keep & RB_VIS_TAB)) || (c == '\n' && (keep & RB_VIS_NL))) {
			rb_buf_putc(b, (char)c);
			i++;
		} else if (c == 0x1b) {
			rb_buf_puts(b, "\\e");
			i++;
		} else if (c < sizeof(named) - 1 && named[c] != '.') {
			rb_buf_putc(b, '\\');
			rb_buf_putc(b, named[c]);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			rb_buf_printf(b, "\\x%02x", c);
			i++;
		} else if ((u = utf8_one(p + i, len - i))) {
			if (rb_utf8_unsafe(p + i, u, &cp))
				rb_buf_printf(b, "\\u%04x", (unsigned)cp);
			else
				rb_buf_add(b, s + i, u);
			i += u;
		} else {
			rb_buf_printf(b, "\\x%02x", c);
			i++;
		}
	}
	if (!b->s)
		rb_buf_add(b, "", 0);
}

char *rb_visible(const char *s, size_t len, unsigned keep)
{
	struct rb_buf b;
	rb_buf_init(&b);
	rb_visible_add(&b, s, len, keep);
	return rb_buf_detach(&b);
}

int rb_fail(char **err, const char *fmt, ...)
{
	int saved = errno;
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		*err = rb_xvasprintf(fmt, ap);
		va_end(ap);
	}
	errno = saved;
	return -1;
}

void rb_hex(const unsigned char *b, size_t n, char *out)
{
	static const char digit[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digit[b[i] >> 4];
		out[2 * i + 1] = digit[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* SHA-256 fetched once: with EVP_sha256(), each digest would fetch it again (a lookup and locks). */
static EVP_MD *sha256_md;

static void sha256_free(void)
{
	EVP_MD_free(sha256_md);
}

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (sha256_md)
		atexit(sha256_free);
}

static const EVP_MD *sha256(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, sha256_fetch);
	return sha256_md ? sha256_md : EVP_sha256();
}

int rb_sha256_hex(const void *buf, size_t len, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!EVP_Digest(buf, len, md, &n, sha256(), NULL) || n != 32) {
		hex[0] = '\0';
		return -1;
	}
	rb_hex(md, 32, hex);
	return 0;
}

int rb_sha256_hex_ctx(void *ctx, const void *buf, size_t len, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!ctx || EVP_DigestInit_ex2(ctx, sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, buf, len) != 1 || EVP_DigestFinal_ex(ctx, md, &n) != 1 ||
	    n != 32)
		return rb_sha256_hex(buf, len, hex);
	rb_hex(md, 32, hex);
	return 0;
}

int rb_sha256_file(const char *path, char hex[65])
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	int bad = fstat(fd, &st) < 0 ? errno : !S_ISREG(st.st_mode) ? EINVAL : 0;
	if (bad) {
		close(fd);
		errno = bad;
		return -1;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char buf[65536], d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	ssize_t got = 0;
	int ok = md && EVP_DigestInit_ex(md, sha256(), NULL);
	while (ok && (got = read(fd, buf, sizeof(buf))) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		ok = got > 0 && EVP_DigestUpdate(md, buf, (size_t)got);
	}
	int e = errno;
	ok = ok && EVP_DigestFinal_ex(md, d, &n) && n == 32;
	EVP_MD_CTX_free(md);
	close(fd);
	if (!ok) {
		errno = got < 0 ? e : EIO;
		return -1;
	}
	rb_hex(d, 32, hex);
	return 0;
}
