/*
 * What pg.query and pg.exec share with pg.set_password (pg_role.c).
 */
#ifndef RB_PG_H
#define RB_PG_H

#include <libpq-fe.h>

#include "util.h"

/* "DOING: WHY" from libpq's message, without the host, user or password it may name. */
char *rb_pg_conn_error(PGconn *conn, const char *doing);

/* The server's words on an error into b: message (SQLSTATE), detail, hint. */
void rb_pg_error_words(struct rb_buf *b, const PGresult *r, const char *fallback);

#endif
