/*
 * Where a place in a POSIX sh script stands: unquoted, inside "..." or '...',
 * in a comment, in a here-document's body.  A run: command is built as text
 * with each ${{ }} value replaced by a reference to an environment variable,
 * and the reference must suit the place ("${V}" unquoted, ${V} inside double
 * quotes, '"${V}"' inside single quotes).  A value never becomes shell text,
 * so a mistaken guess here can garble a command but never run a value as
 * code.  Places where even a reference is wrong are refused: after a
 * backslash, in the body of a here-document whose delimiter is quoted
 * (nothing expands there); inside $(( )) only an integer may stand (bash
 * evaluates a value there as arithmetic, and runs commands found in it).
 */
#ifndef RB_SHSCAN_H
#define RB_SHSCAN_H

#include <stddef.h>

enum rb_sh_place {
	RB_SH_PLAIN,            /* unquoted: also inside $( ), backquotes */
	RB_SH_DQUOTE,           /* inside "...", ${...} or an expanding here-document */
	RB_SH_SQUOTE,           /* inside '...' */
	RB_SH_COMMENT,          /* after # to the end of the line */
	RB_SH_ARITH,            /* inside $(( )): only an integer may stand here */
	RB_SH_REFUSED,          /* see rb_shscan_place's why */
};

#define RB_SHSCAN_DEPTH 32      /* nested $( ), ${ }, "..." kept track of */
#define RB_SHSCAN_DELIM 64      /* the longest here-document delimiter */
#define RB_SHSCAN_HEREDOCS 8    /* here-documents opened on one line */

struct rb_shscan {
	unsigned char stack[RB_SHSCAN_DEPTH];
	int depth;
	int escaped;            /* the last character was an unquoted backslash */
	int word_start;         /* a # here would start a comment */
	char prev;
	/* here-documents: those named on this line, then the body being read */
	struct {
		char delim[RB_SHSCAN_DELIM + 1];
		int literal, tabs;
	} doc[RB_SHSCAN_HEREDOCS];
	int ndoc, in_doc;
	char line[RB_SHSCAN_DELIM + 2];  /* the body line so far, to find the delimiter */
	size_t line_len;
	int line_long;
	int after_lt;           /* "<<" seen: the delimiter word is next */
	char word[RB_SHSCAN_DELIM + 1];
	size_t word_len;
	int word_quoted, word_tabs, in_word;
	char word_q;            /* the quote open in the delimiter word */
};

void rb_shscan_init(struct rb_shscan *s);
/* Reads the next n bytes of the script. */
void rb_shscan_feed(struct rb_shscan *s, const char *p, size_t n);
/* The place after what was fed; for RB_SH_REFUSED, *why says why (static text). */
enum rb_sh_place rb_shscan_place(const struct rb_shscan *s, const char **why);

#endif
