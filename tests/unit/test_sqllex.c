/*
 * Tests interp/sqllex.c: which statements of an action's sql `runbook lint`
 * calls destructive.  Each case is SQL and what is found in it, in order
 * ("" for nothing): D a DELETE without WHERE, X a DROP, T a TRUNCATE; the
 * traps are comments, strings, quoted identifiers, dollar quotes, case and
 * DELETE ... WHERE inside a CTE.
 *
 * Build and run from the repository root: make build/unit/test_sqllex &&
 * build/unit/test_sqllex (make test runs it).
 */
#include <stdio.h>
#include <string.h>

#include "sqllex.h"

#include "check.h"

static const struct {
	const char *sql, *want;
} cases[] = {
	{"DELETE FROM t", "D"},
	{"delete from t;", "D"},
	{"DeLeTe FROM t", "D"},
	{"DELETE FROM t WHERE id = 1", ""},
	{"delete from t where true", ""},
	{"DROP TABLE t", "X"},
	{"drop index if exists i", "X"},
	{"TRUNCATE t", "T"},
	{"truncate table a, b cascade", "T"},
	{"SELECT 1; DELETE FROM t; DROP TABLE u", "DX"},
	{"BEGIN; TRUNCATE t; COMMIT", "T"},
	/* words inside comments, strings and quotes are not keywords */
	{"-- DELETE FROM t\nSELECT 1", ""},
	{"/* DROP TABLE t */ SELECT 1", ""},
	{"/* nested /* DROP TABLE t */ still a comment */ SELECT 1", ""},
	{"SELECT 'DROP TABLE t'", ""},
	{"SELECT 'it''s; DROP TABLE t'", ""},
	{"SELECT E'\\'; DROP TABLE t'", ""},
	{"SELECT 'a\\'; DROP TABLE t", "X"},  /* standard strings: the backslash is a char */
	{"SELECT \"DELETE\" FROM t", ""},
	{"SELECT $$ DELETE FROM t $$", ""},
	{"SELECT $body$ ; DROP TABLE t; $body$", ""},
	{"SELECT $a$ $b$ DROP $b$ $a$; DROP TABLE t", "X"},
	{"INSERT INTO t VALUES ($1); DELETE FROM t", "D"},
	{"DELETE FROM t WHERE k = '${{ params.k }}'", ""},
	{"DELETE FROM t -- WHERE id = 1", "D"},
	{"DELETE FROM t /* WHERE */", "D"},
	/* identifiers that contain a keyword */
	{"UPDATE t SET deleted_at = now() WHERE dropped", ""},
	{"SELECT truncate_me FROM t", ""},
	/* DELETE in a CTE */
	{"WITH gone AS (DELETE FROM t WHERE old RETURNING id) SELECT count(*) FROM gone", ""},
	{"WITH gone AS (DELETE FROM t RETURNING id) SELECT count(*) FROM gone", "D"},
	{"WITH x AS (SELECT 1 WHERE true) DELETE FROM t", "D"},
	{"WITH x AS (DELETE FROM a WHERE b) DELETE FROM t", "D"},
	{"DELETE FROM t USING (SELECT id FROM u WHERE z) s", "D"},
	{"DELETE FROM t WHERE id IN (SELECT id FROM u)", ""},
	{"EXPLAIN ANALYZE DELETE FROM t", "D"},
	/* in the order of their keywords, ALTER's DROP among the others (fuzz_review) */
	{"ALTER TABLE t ADD c int DEFAULT (DELETE) , DROP COLUMN d", "DX"},
	/* DELETE as a word of other statements */
	{"CREATE TABLE t (u int REFERENCES u ON DELETE CASCADE)", ""},
	{"GRANT SELECT, DELETE ON t TO r", ""},
	{"GRANT DELETE ON t TO r", ""},
	{"CREATE TRIGGER g BEFORE DELETE ON t FOR EACH ROW EXECUTE FUNCTION f()", ""},
	/* ALTER ... DROP: a column, not a constraint or a default */
	{"ALTER TABLE t DROP COLUMN c", "X"},
	{"ALTER TABLE t DROP c", "X"},
	{"ALTER TABLE t DROP CONSTRAINT k", ""},
	{"ALTER TABLE t ALTER c DROP DEFAULT, ALTER d DROP NOT NULL", ""},
	/* unterminated quotes and comments run to the end */
	{"SELECT 'DROP TABLE t", ""},
	{"SELECT $$ DROP TABLE t", ""},
	{"/* DROP TABLE t", ""},
	{"", ""},
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rb_sql_finding f[8];
		const char *sql = cases[i].sql;
		size_t n = rb_sql_destructive(sql, strlen(sql), f, 8);
		char got[9] = "";
		for (size_t k = 0; k < n && k < 8; k++)
			got[k] = f[k].what == RB_SQL_DELETE_ALL ? 'D'
				 : f[k].what == RB_SQL_DROP    ? 'X'
							       : 'T';
		got[n < 8 ? n : 8] = '\0';
		CHECK(!strcmp(got, cases[i].want), "%s: found '%s', want '%s'", sql, got,
		      cases[i].want);
	}
	/* the offset is the keyword's */
	struct rb_sql_finding f[2];
	const char *sql = "SELECT 1; /* x */ drop table t";
	CHECK(rb_sql_destructive(sql, strlen(sql), f, 2) == 1 && f[0].off == 18,
	      "offset of drop: %zu", f[0].off);
	/* more than max: counted, not written */
	sql = "DROP TABLE a; DROP TABLE b; DROP TABLE c";
	CHECK(rb_sql_destructive(sql, strlen(sql), f, 2) == 3, "three drops");
	printf("sqllex: %d passed, %d failed\n", npass, nfail);
	return nfail != 0;
}
