/*
 * A scanner of POSIX sh quoting, enough to say where a place in a script
 * stands (shscan.h).  It reads the script once, a byte at a time, and never
 * runs or rewrites it.
 */
#include "shscan.h"

#include <string.h>

enum { PLAIN, DQUOTE, SQUOTE, COMMENT, CMDSUB, PARAM, ARITH, BACKTICK };

static int top(const struct rb_shscan *s)
{
	return s->stack[s->depth - 1];
}

static void push(struct rb_shscan *s, int what)
{
	if (s->depth < RB_SHSCAN_DEPTH)
		s->stack[s->depth] = (unsigned char)what;
	s->depth++;     /* past the bound: counted, and refused by rb_shscan_place */
}

static void pop(struct rb_shscan *s)
{
	if (s->depth > 1)
		s->depth--;
}

void rb_shscan_init(struct rb_shscan *s)
{
	memset(s, 0, sizeof(*s));
	s->stack[0] = PLAIN;
	s->depth = 1;
	s->word_start = 1;
}

/* The here-document delimiter word after "<<": quotes make its body literal. */
static int delim_char(struct rb_shscan *s, char c)
{
	if (!s->in_word) {
		if (c == '<' && s->prev == '<' && !s->word_tabs) {
			s->after_lt = 0;        /* bash's here-string, <<< word */
			return 1;
		}
		if (c == '-' && s->prev == '<' && !s->word_tabs) {
			s->word_tabs = 1;
			return 1;
		}
		if (c == ' ' || c == '\t')
			return 1;
		s->in_word = 1;
		s->word_len = 0;
		s->word_quoted = 0;
	}
	if (s->word_q) {
		if (c == s->word_q)
			s->word_q = 0;
		else if (s->word_len < RB_SHSCAN_DELIM)
			s->word[s->word_len++] = c;
		return 1;
	}
	if (c == '\'' || c == '"' || c == '\\') {
		s->word_quoted = 1;
		if (c != '\\')
			s->word_q = c;
		return 1;
	}
	if (!strchr(" \t\n;|&<>()", c)) {
		if (s->word_len < RB_SHSCAN_DELIM)
			s->word[s->word_len++] = c;
		return 1;
	}
	/* The word ended: its here-document's body starts on the next line. */
	if (s->ndoc < RB_SHSCAN_HEREDOCS && s->word_len) {
		memcpy(s->doc[s->ndoc].delim, s->word, s->word_len);
		s->doc[s->ndoc].delim[s->word_len] = 0;
		s->doc[s->ndoc].literal = s->word_quoted;
		s->doc[s->ndoc].tabs = s->word_tabs;
		s->ndoc++;
	}
	s->after_lt = s->in_word = s->word_tabs = 0;
	return 0;               /* the terminator is read as usual */
}

/* A byte of a here-document's body. */
static void doc_char(struct rb_shscan *s, char c)
{
	if (c != '\n') {
		if (s->escaped)
			s->escaped = 0;
		else if (c == '\\' && !s->doc[0].literal)
			s->escaped = 1;
		if (s->line_len < sizeof(s->line) - 1)
			s->line[s->line_len++] = c;
		else
			s->line_long = 1;
		return;
	}
	s->escaped = 0;
	s->line[s->line_len] = 0;
	const char *l = s->line;
	while (s->doc[0].tabs && *l == '\t')
		l++;
	if (!s->line_long && !strcmp(l, s->doc[0].delim)) {
		memmove(&s->doc[0], &s->doc[1], (size_t)(s->ndoc - 1) * sizeof(s->doc[0]));
		s->in_doc = --s->ndoc > 0;
	}
	s->line_len = 0;
	s->line_long = 0;
}

static void feed_char(struct rb_shscan *s, char c)
{
	if (s->in_doc) {
		doc_char(s, c);
		s->prev = c;
		return;
	}
	if (s->after_lt && delim_char(s, c)) {
		s->prev = c;
		return;
	}
	int t = top(s), was_start = s->word_start;
	s->word_start = 0;
	if (s->escaped) {
		s->escaped = 0;
		s->prev = 0;    /* an escaped character starts nothing */
		return;
	}
	switch (t) {
	case SQUOTE:
		if (c == '\'')
			pop(s);
		break;
	case COMMENT:
		if (c != '\n')
			break;
		pop(s);
		t = top(s);
		__attribute__((fallthrough));   /* the newline ends the command too */
	case PLAIN:
	case CMDSUB:
	case BACKTICK:
		if (c == '\\')
			s->escaped = 1;
		else if (c == '\'')
			push(s, SQUOTE);
		else if (c == '"')
			push(s, DQUOTE);
		else if (c == '`')
			t == BACKTICK ? pop(s) : push(s, BACKTICK);
		else if (c == '#' && was_start)
			push(s, COMMENT);
		else if (c == '(' && s->prev == '$')
			push(s, CMDSUB);
		else if (c == '(' && s->prev == '(' && t == CMDSUB)
			s->stack[s->depth - 1] = ARITH;
		else if (c == '{' && s->prev == '$')
			push(s, PARAM);
		else if (c == ')' && t == CMDSUB)
			pop(s);
		else if (c == '<' && s->prev == '<' && t != COMMENT)
			s->after_lt = 1;
		if (c == '\n' && s->ndoc && s->depth == 1)
			s->in_doc = 1;
		s->word_start = strchr(" \t\n;|&()", c) != NULL;
		break;
	case DQUOTE:
	case PARAM:
		if (c == '\\')
			s->escaped = 1;
		else if (c == '"' && t == DQUOTE)
			pop(s);
		else if (c == '"')
			push(s, DQUOTE);
		else if (c == '}' && t == PARAM)
			pop(s);
		else if (c == '\'' && t == PARAM)
			push(s, SQUOTE);
		else if (c == '`')
			push(s, BACKTICK);
		else if (c == '(' && s->prev == '$')
			push(s, CMDSUB);
		else if (c == '{' && s->prev == '$')
			push(s, PARAM);
		break;
	case ARITH:
		/* "))" ends it; parentheses inside are counted as words are */
		if (c == ')' && s->prev == ')')
			pop(s);
		break;
	}
	s->prev = c;
}

void rb_shscan_feed(struct rb_shscan *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		feed_char(s, p[i]);
}

enum rb_sh_place rb_shscan_place(const struct rb_shscan *s, const char **why)
{
	*why = NULL;
	if (s->depth > RB_SHSCAN_DEPTH) {
		*why = "nested too deep in quotes and substitutions to tell how the shell reads it";
		return RB_SH_REFUSED;
	}
	if (s->escaped) {
		*why = "right after a backslash, which would take the value's first character";
		return RB_SH_REFUSED;
	}
	if (s->after_lt) {
		*why = "as a here-document's delimiter";
		return RB_SH_REFUSED;
	}
	if (s->in_doc) {
		if (s->doc[0].literal) {
			*why = "in a here-document whose delimiter is quoted, where nothing expands: "
			       "unquote the delimiter";
			return RB_SH_REFUSED;
		}
		return RB_SH_DQUOTE;
	}
	switch (top(s)) {
	case DQUOTE:
	case PARAM:
		return RB_SH_DQUOTE;
	case SQUOTE:
		return RB_SH_SQUOTE;
	case COMMENT:
		return RB_SH_COMMENT;
	case ARITH:
		return RB_SH_ARITH;
	default:
		return RB_SH_PLAIN;
	}
}
