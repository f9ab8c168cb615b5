/*
 * Small shared helpers: an arena for objects that live as long as a loaded
 * document, a growable string buffer, and checked allocation.  Nothing here
 * knows about runbooks.
 */
#ifndef RB_UTIL_H
#define RB_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation failure is not recoverable in a CLI: report and abort. */
void *rb_xmalloc(size_t n);
void *rb_xcalloc(size_t n, size_t size);
void *rb_xrealloc(void *p, size_t n);
char *rb_xstrdup(const char *s);
char *rb_xstrndup(const char *s, size_t n);
char *rb_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *rb_xvasprintf(const char *fmt, va_list ap);

/* n bytes as 2n lower-case hex digits and a NUL. */
void rb_hex(const unsigned char *b, size_t n, char *out);
/* SHA-256 of buf as 64 lower-case hex digits and a NUL; -1 if OpenSSL fails. */
int rb_sha256_hex(const void *buf, size_t len, char hex[65]);
/*
 * The same through ctx (an EVP_MD_CTX *, kept by a caller that hashes often:
 * EVP_Digest sets up a context for every call); NULL: rb_sha256_hex.
 */
int rb_sha256_hex_ctx(void *ctx, const void *buf, size_t len, char hex[65]);
/*
 * The same of a file's bytes, read a piece at a time; -1 with errno when it
 * cannot be read, ELOOP when path is a symbolic link (not followed), EINVAL
 * when it is not a regular file (a FIFO or a device could be read forever).
 */
int rb_sha256_file(const char *path, char hex[65]);

/* Grow a vector *v of *cap elements of size sz so that it holds need. */
void rb_grow(void *v, size_t *cap, size_t need, size_t sz);

struct rb_arena_block;
struct rb_arena {
	struct rb_arena_block *head;
	size_t used;            /* bytes used in head */
	size_t total;           /* bytes allocated in all blocks */
};

void rb_arena_init(struct rb_arena *a);
void rb_arena_release(struct rb_arena *a);
void *rb_arena_alloc(struct rb_arena *a, size_t n);      /* zeroed */
char *rb_arena_strndup(struct rb_arena *a, const char *s, size_t n);

struct rb_buf {
	char *s;
	size_t len, cap;
};

void rb_buf_init(struct rb_buf *b);
void rb_buf_release(struct rb_buf *b);
void rb_buf_add(struct rb_buf *b, const char *s, size_t n);
void rb_buf_puts(struct rb_buf *b, const char *s);
void rb_buf_putc(struct rb_buf *b, char c);
void rb_buf_printf(struct rb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *rb_buf_detach(struct rb_buf *b);   /* caller frees; buffer is reset */

/* Set *err (when err is not NULL) to the message and return -1; errno is kept. */
int rb_fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A growable vector of malloc'd strings. */
struct rb_strv {
	char **v;
	size_t n, cap;
};

void rb_strv_push(struct rb_strv *sv, char *s);      /* takes s */
void rb_strv_release(struct rb_strv *sv);
/* NULL-terminated view of the strings (valid until the next push). */
char *const *rb_strv_terminated(struct rb_strv *sv);

/* Levenshtein distance, capped: returns max+1 when larger than max. */
size_t rb_edit_distance(const char *a, const char *b, size_t max);
/* The candidate closest to word, if close enough to be a typo of it, or NULL. */
const char *rb_suggest(const char *word, const char *const *cands, size_t n);

/* First byte that is not valid UTF-8, or len. */
size_t rb_utf8_check(const char *s, size_t len);
/*
 * The length in bytes of the character at s (n bytes left) when it is one
 * that JSON leaves as it is but that misleads on a terminal (a C1 control, a
 * line separator, a bidirectional control), with its code point in *cp; else 0.
 */
size_t rb_utf8_unsafe(const unsigned char *s, size_t n, uint32_t *cp);
/* s with every byte that is not valid UTF-8 replaced by U+FFFD; malloc'd. */
char *rb_utf8_lossy(const char *s, size_t len, size_t *outlen);

/*
 * Text from a runbook, a value or a command's output made visible for a
 * terminal, so that it can neither move the cursor, erase, recolour nor
 * retitle: NUL as \0, ESC as \e, CR as \r (and \a \b \v \f), the other C0
 * controls and DEL as \xNN, C1 and bidirectional controls and line
 * separators as \uNNNN, bytes that are not UTF-8 as \xNN.  Tab and newline
 * are kept when keep says so, else \t and \n.  A backslash stays as it is.
 * Every text printed to the terminal goes through this (docs/cli.md).
 */
enum { RB_VIS_TAB = 1, RB_VIS_NL = 2 };
void rb_visible_add(struct rb_buf *b, const char *s, size_t len, unsigned keep);
char *rb_visible(const char *s, size_t len, unsigned keep);     /* malloc'd */

int rb_read_file(const char *path, size_t max, char **out, size_t *len, char **err);

#endif
