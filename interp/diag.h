/*
 * Diagnostics: positioned messages collected while loading a file, printed
 * as FILE:LINE:COL: error: MESSAGE with the source line and a caret.  This is
 * the only module that formats them; everything else fills them.
 */
#ifndef RB_DIAG_H
#define RB_DIAG_H

#include <stddef.h>
#include <stdio.h>

struct rb_node;

enum rb_severity { RB_ERROR, RB_WARNING, RB_NOTE };

struct rb_diag {
	enum rb_severity sev;
	int line, col;          /* 1-based; 0 when the message has no position */
	size_t seq;             /* order of report, for a stable sort */
	char *msg;
};

struct rb_diags {
	const char *file;       /* name printed in front of every message */
	const char *src;        /* the file's bytes, for the caret line; may be NULL */
	size_t srclen;
	struct rb_diag *v;
	size_t n, cap;
	size_t errors;
};

void rb_diags_init(struct rb_diags *d, const char *file, const char *src, size_t srclen);
void rb_diags_release(struct rb_diags *d);

/* Each returns -1 so that a check is one line: return rb_error_at(...). */
int rb_error_at(struct rb_diags *d, const struct rb_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int rb_error_pos(struct rb_diags *d, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void rb_warning_pos(struct rb_diags *d, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void rb_note_pos(struct rb_diags *d, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Print all messages sorted by position; colour when color is set. */
void rb_diags_print(struct rb_diags *d, FILE *f, int color);

/* Whether to colour output on stream f: a TTY and NO_COLOR unset. */
int rb_use_color(FILE *f);

#endif
