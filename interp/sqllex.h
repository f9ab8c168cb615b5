/*
 * SQL's lexical layer, enough for `runbook lint` to find destructive
 * statements (DELETE without WHERE, DROP, TRUNCATE) in an action's sql.  It
 * reads PostgreSQL's comments, strings, quoted identifiers and dollar quotes
 * so that words inside them are never taken for keywords; it never builds,
 * rewrites or runs SQL.
 */
#ifndef RB_SQLLEX_H
#define RB_SQLLEX_H

#include <stddef.h>

enum rb_sql_what {
	RB_SQL_DELETE_ALL,      /* DELETE without a WHERE of its own */
	RB_SQL_DROP,            /* DROP ..., or ALTER ... DROP COLUMN */
	RB_SQL_TRUNCATE,
};

struct rb_sql_finding {
	enum rb_sql_what what;
	size_t off;             /* byte offset of the keyword in the text */
};

/*
 * The destructive statements in text[0, len): up to max findings in out[],
 * in order; returns how many were found (which may exceed max).
 */
size_t rb_sql_destructive(const char *text, size_t len, struct rb_sql_finding *out,
			  size_t max);

/* "DELETE without WHERE", "DROP", "TRUNCATE". */
const char *rb_sql_what_name(enum rb_sql_what w);

#endif
