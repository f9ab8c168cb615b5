/*
 * Finding many literal byte strings in a text in one pass: an Aho–Corasick
 * automaton for strings of any length, and a rolling-hash set for many
 * strings of one fixed length.  Both are built once and then only read, so
 * any number of threads may scan with one at the same time.  They know
 * nothing of secrets; interp/redact.c decides what to look for.
 */
#ifndef RB_LITMATCH_H
#define RB_LITMATCH_H

#include <stddef.h>

/*
 * Called for each match text[start, end).  The automaton reports, at each
 * position where strings end, the longest of them (shorter ones ending there
 * are inside it), in increasing order of end, but for strings longer than
 * 512 bytes: those come when their first 512 bytes have been seen, so out of
 * order.  The window set reports each window, in increasing order.
 */
typedef void (*rb_lit_hit_fn)(void *ud, size_t start, size_t end);

struct rb_acm;

/*
 * An automaton for the n strings pats[i] of lens[i] bytes (empty ones are
 * ignored).  Strings longer than 512 bytes are not copied: they must outlive
 * the automaton.
 */
struct rb_acm *rb_acm_new(const char *const *pats, const size_t *lens, size_t n);
void rb_acm_free(struct rb_acm *a);
void rb_acm_scan(const struct rb_acm *a, const char *s, size_t len, rb_lit_hit_fn hit, void *ud);
/* Nodes of the trie, for tests and benchmarks. */
size_t rb_acm_nodes(const struct rb_acm *a);

struct rb_winset;

/*
 * A set of the w-byte windows of the n strings (strings shorter than w add
 * nothing).  A scan reports each w-byte piece of the text that is in the set,
 * so that a piece of one of the strings is covered by hits: whole when the
 * string is at most 8 KiB long; for longer ones only every s-th window is
 * kept (s grows with the length, up to w), so that fewer than s bytes at
 * each end of a piece can remain uncovered, and pieces shorter than
 * w + s - 1 bytes may not be found.
 */
struct rb_winset *rb_winset_new(size_t w, const char *const *strs, const size_t *lens, size_t n);
void rb_winset_free(struct rb_winset *ws);
void rb_winset_scan(const struct rb_winset *ws, const char *s, size_t len, rb_lit_hit_fn hit,
		    void *ud);
size_t rb_winset_count(const struct rb_winset *ws);

#endif
