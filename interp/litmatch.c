/*
 * Multi-literal matching for redaction: an Aho–Corasick automaton (one pass,
 * time linear in the text whatever the strings) and a rolling-hash set of
 * fixed-width windows.  Built once, read-only afterwards; no allocation
 * while scanning.
 */
#include "litmatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* --- Aho–Corasick ------------------------------------------------------------- */

/*
 * Node 0 is the root.  Ordinary text keeps the automaton near the root, so
 * the root and its children have full transition tables, failures resolved
 * (a child's row indexed by byte class: the bytes that occur in the strings,
 * and one class for all others).  Deeper nodes have sorted edge lists and
 * failure links (most of them, deep in a long string, have one child).
 * mlen is the length of the longest string that ends in a node's state,
 * through the failure links: the only match a scan reports at a position.
 */
#define NO_ROW UINT32_MAX
#define ACM_ANCHOR 512

struct rb_acm {
	size_t n;
	uint32_t root[256];
	uint16_t cls[256];
	size_t ncls;
	uint32_t *row;                  /* node -> its row in dense, or NO_ROW */
	uint32_t *dense;
	uint32_t *fail;
	uint32_t *mlen;
	uint32_t *estart;       /* n + 1: node u's edges are estart[u] .. estart[u+1] */
	/*
	 * Strings longer than ACM_ANCHOR bytes are in the trie by their first
	 * ACM_ANCHOR bytes only, and checked whole where those end: a trie node
	 * for every byte of a large sensitive output would take tens of bytes
	 * for each of its bytes.  alink is the anchor that ends in a node's
	 * state (all anchors have one length: there is at most one), lfirst its
	 * list of long strings; both NULL when there is none.
	 */
	uint32_t *alink, *lfirst;
	struct longstr {
		const char *p;
		size_t len;
		uint32_t next;          /* index + 1 in longs; 0 ends the list */
	} *longs;
	size_t nlongs;
	unsigned char *ebyte;
	uint32_t *eto;
};

/* The trie while it is built: children as linked lists. */
struct trie {
	uint32_t *first, *next, *depth;
	unsigned char *byte, *term;
	size_t n, cap;
};

static uint32_t trie_node(struct trie *t, unsigned char c, uint32_t depth)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 256;
		t->first = rb_xrealloc(t->first, t->cap * sizeof(*t->first));
		t->next = rb_xrealloc(t->next, t->cap * sizeof(*t->next));
		t->depth = rb_xrealloc(t->depth, t->cap * sizeof(*t->depth));
		t->byte = rb_xrealloc(t->byte, t->cap);
		t->term = rb_xrealloc(t->term, t->cap);
	}
	uint32_t v = (uint32_t)t->n++;
	t->first[v] = 0;
	t->next[v] = 0;
	t->depth[v] = depth;
	t->byte[v] = c;
	t->term[v] = 0;
	return v;
}

/* Inserts p and returns its last node. */
static uint32_t trie_insert(struct trie *t, uint32_t rootkid[256], const unsigned char *p, size_t len)
{
	uint32_t u = 0;
	for (size_t i = 0; i < len; i++) {
		uint32_t v = 0;
		if (u == 0) {
			v = rootkid[p[i]];
		} else {
			for (uint32_t k = t->first[u]; k; k = t->next[k])
				if (t->byte[k] == p[i]) {
					v = k;
					break;
				}
		}
		if (!v) {
			v = trie_node(t, p[i], (uint32_t)i + 1);
			if (u == 0) {
				rootkid[p[i]] = v;
			} else {
				t->next[v] = t->first[u];
				t->first[u] = v;
			}
		}
		u = v;
	}
	return u;
}

static inline uint32_t acm_edge(const struct rb_acm *a, uint32_t u, unsigned char c)
{
	uint32_t lo = a->estart[u], hi = a->estart[u + 1];
	if (hi - lo <= 8) {
		for (; lo < hi; lo++)
			if (a->ebyte[lo] == c)
				return a->eto[lo];
		return 0;
	}
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (a->ebyte[mid] < c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < a->estart[u + 1] && a->ebyte[lo] == c ? a->eto[lo] : 0;
}

static int cmp_byte(const void *x, const void *y)
{
	const uint32_t *a = x, *b = y;        /* pairs (byte, node) */
	return (int)a[0] - (int)b[0];
}

struct rb_acm *rb_acm_new(const char *const *pats, const size_t *lens, size_t n)
{
	struct trie t = {0};
	uint32_t rootkid[256] = {0};
	trie_node(&t, 0, 0);
	struct rb_acm *a = rb_xcalloc(1, sizeof(*a));
	uint32_t *anchor_of = NULL;     /* long string -> its anchor's node */
	size_t cap = 0, acap = 0;
	for (size_t i = 0; i < n; i++) {
		if (!lens[i])
			continue;
		if (lens[i] <= ACM_ANCHOR) {
			uint32_t u = trie_insert(&t, rootkid, (const unsigned char *)pats[i], lens[i]);
			t.term[u] = 1;  /* not in one statement: the insert moves t.term */
			continue;
		}
		rb_grow(&a->longs, &cap, a->nlongs + 1, sizeof(*a->longs));
		a->longs[a->nlongs] = (struct longstr){pats[i], lens[i], 0};
		rb_grow(&anchor_of, &acap, a->nlongs + 1, sizeof(*anchor_of));
		anchor_of[a->nlongs++] = trie_insert(&t, rootkid, (const unsigned char *)pats[i],
						     ACM_ANCHOR);
	}

	a->n = t.n;
	if (a->nlongs) {
		a->lfirst = rb_xcalloc(t.n, sizeof(*a->lfirst));
		a->alink = rb_xcalloc(t.n, sizeof(*a->alink));
		for (size_t k = 0; k < a->nlongs; k++) {
			a->longs[k].next = a->lfirst[anchor_of[k]];
			a->lfirst[anchor_of[k]] = (uint32_t)k + 1;
		}
	}
	free(anchor_of);
	a->fail = rb_xcalloc(t.n, sizeof(*a->fail));
	a->mlen = rb_xcalloc(t.n, sizeof(*a->mlen));
	a->estart = rb_xcalloc(t.n + 1, sizeof(*a->estart));
	size_t nedges = t.n - 1;        /* every node but the root has one parent */
	a->ebyte = rb_xmalloc(nedges ? nedges : 1);
	a->eto = rb_xmalloc((nedges ? nedges : 1) * sizeof(*a->eto));
	memcpy(a->root, rootkid, sizeof(rootkid));

	/* Edge lists, sorted by byte, for every node but the root. */
	uint32_t *pairs = NULL;
	size_t pcap = 0, e = 0;
	for (size_t u = 0; u < t.n; u++) {
		a->estart[u] = (uint32_t)e;
		if (u == 0)
			continue;
		size_t k = 0;
		for (uint32_t v = t.first[u]; v; v = t.next[v]) {
			rb_grow(&pairs, &pcap, 2 * (k + 1), sizeof(*pairs));
			pairs[2 * k] = t.byte[v];
			pairs[2 * k + 1] = v;
			k++;
		}
		if (k > 1)
			qsort(pairs, k, 2 * sizeof(*pairs), cmp_byte);
		for (size_t j = 0; j < k; j++, e++) {
			a->ebyte[e] = (unsigned char)pairs[2 * j];
			a->eto[e] = pairs[2 * j + 1];
		}
	}
	a->estart[t.n] = (uint32_t)e;
	free(pairs);

	/* Failure links breadth first: a node's link is shallower than the node. */
	uint32_t *queue = rb_xmalloc(t.n * sizeof(*queue));
	size_t qh = 0, qt = 0;
	for (int c = 0; c < 256; c++) {
		uint32_t v = a->root[c];
		if (v) {
			a->fail[v] = 0;
			a->mlen[v] = t.term[v] ? 1 : 0;
			if (a->alink)
				a->alink[v] = a->lfirst[v] ? v : 0;
			queue[qt++] = v;
		}
	}
	while (qh < qt) {
		uint32_t u = queue[qh++];
		for (uint32_t j = a->estart[u]; j < a->estart[u + 1]; j++) {
			unsigned char c = a->ebyte[j];
			uint32_t v = a->eto[j], f = a->fail[u], to;
			for (;;) {
				if (f == 0) {
					to = a->root[c];
					break;
				}
				if ((to = acm_edge(a, f, c)))
					break;
				f = a->fail[f];
			}
			a->fail[v] = to;
			a->mlen[v] = t.term[v] ? t.depth[v] : a->mlen[to];
			if (a->alink)
				a->alink[v] = a->lfirst[v] ? v : a->alink[to];
			queue[qt++] = v;
		}
	}
	free(queue);

	/* Full rows for the root's children: their edges over the root's. */
	unsigned char seen[256] = {0};
	for (size_t j = 0; j < a->estart[t.n]; j++)
		seen[a->ebyte[j]] = 1;
	for (int c = 0; c < 256; c++)
		seen[c] |= a->root[c] != 0;
	a->ncls = 1;
	for (int c = 0; c < 256; c++)
		a->cls[c] = seen[c] ? (uint16_t)a->ncls++ : 0;
	a->row = rb_xmalloc(t.n * sizeof(*a->row));
	for (size_t u = 0; u < t.n; u++)
		a->row[u] = NO_ROW;
	size_t nrows = 0;
	for (int c = 0; c < 256; c++)
		nrows += a->root[c] != 0;
	a->dense = rb_xmalloc((nrows ? nrows : 1) * a->ncls * sizeof(*a->dense));
	nrows = 0;
	for (int c = 0; c < 256; c++) {
		uint32_t u = a->root[c];
		if (!u)
			continue;
		uint32_t *d = a->dense + nrows * a->ncls;
		a->row[u] = (uint32_t)nrows++;
		d[0] = 0;
		for (int b = 0; b < 256; b++)
			if (a->cls[b])
				d[a->cls[b]] = a->root[b];
		for (uint32_t j = a->estart[u]; j < a->estart[u + 1]; j++)
			d[a->cls[a->ebyte[j]]] = a->eto[j];
	}
	free(t.first);
	free(t.next);
	free(t.depth);
	free(t.byte);
	free(t.term);
	return a;
}

void rb_acm_free(struct rb_acm *a)
{
	if (!a)
		return;
	/* The edges spell the strings: they may be secrets. */
	explicit_bzero(a->ebyte, a->estart[a->n]);
	free(a->row);
	free(a->dense);
	free(a->alink);
	free(a->lfirst);
	free(a->longs);
	free(a->fail);
	free(a->mlen);
	free(a->estart);
	free(a->ebyte);
	free(a->eto);
	free(a);
}

size_t rb_acm_nodes(const struct rb_acm *a)
{
	return a ? a->n : 0;
}

/* The longest of the long strings whose anchor ends at end, checked whole. */
static void long_hits(const struct rb_acm *a, uint32_t u, const char *s, size_t len, size_t end,
		      rb_lit_hit_fn hit, void *ud)
{
	size_t best = 0;
	for (uint32_t k = a->lfirst[u]; k; k = a->longs[k - 1].next) {
		const struct longstr *l = &a->longs[k - 1];
		size_t rest = l->len - ACM_ANCHOR;
		if (l->len > best && rest <= len - end && !memcmp(s + end, l->p + ACM_ANCHOR, rest))
			best = l->len;
	}
	if (best)
		hit(ud, end - ACM_ANCHOR, end - ACM_ANCHOR + best);
}

void rb_acm_scan(const struct rb_acm *a, const char *s, size_t len, rb_lit_hit_fn hit, void *ud)
{
	if (!a || a->n <= 1)
		return;
	const unsigned char *p = (const unsigned char *)s;
	uint32_t st = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		if (st == 0) {
			/* Most of a text is spent at the root: skip what starts nothing. */
			while (!a->root[c] && ++i < len)
				c = p[i];
			if (i == len)
				break;
			st = a->root[c];
		} else if (a->row[st] != NO_ROW) {
			st = a->dense[a->row[st] * a->ncls + a->cls[c]];
		} else {
			for (;;) {
				uint32_t to = acm_edge(a, st, c);
				if (to) {
					st = to;
					break;
				}
				st = a->fail[st];
				if (st == 0) {
					st = a->root[c];
					break;
				}
				if (a->row[st] != NO_ROW) {
					st = a->dense[a->row[st] * a->ncls + a->cls[c]];
					break;
				}
			}
		}
		if (a->mlen[st])
			hit(ud, i + 1 - a->mlen[st], i + 1);
		if (a->alink && a->alink[st])
			long_hits(a, a->alink[st], s, len, i + 1, hit, ud);
	}
}

/* --- fixed-width windows ------------------------------------------------------ */

/*
 * A polynomial rolling hash modulo 2^64 and an open-addressing table of the
 * windows' hashes, each checked against the window's bytes on a hit.  A
 * Bloom filter in front of the table (two bits a window, 16 bits of filter
 * for each) keeps most probes in the cache, and only runs of bytes that
 * occur in some window are probed at all.
 */
#define WS_BASE         0x100000001B3ULL
#define WS_MIX          0x9E3779B97F4A7C15ULL
#define WS_BLOOM_MIN    16      /* log2 of the filter's bits, at least */
#define WS_BLOOM_MAX    26
#define WS_SAMPLE       8192    /* strings longer than this keep every s-th window */

struct rb_winset {
	size_t w, n;
	uint64_t bw;                    /* WS_BASE^w: a byte leaving the window */
	size_t mask;                    /* table size - 1 */
	uint64_t *hv;                   /* slot -> hash */
	uint32_t *idx;                  /* slot -> window + 1; 0 when empty */
	char *bytes;                    /* window i at bytes + i * w */
	unsigned char ok[256];          /* bytes that occur in some window */
	uint64_t *bloom;
	unsigned bloom_bits;            /* log2 of its size in bits */
};

static uint64_t ws_hash(const unsigned char *p, size_t w)
{
	uint64_t h = 0;
	for (size_t i = 0; i < w; i++)
		h = h * WS_BASE + p[i];
	return h;
}

static size_t ws_slot(const struct rb_winset *ws, uint64_t h)
{
	return (size_t)((h * WS_MIX) >> 20) & ws->mask;
}

/* The filter's two bits for h, from two slices of one mixed hash. */
static int ws_maybe(const struct rb_winset *ws, uint64_t h)
{
	uint64_t m = h * WS_MIX;
	size_t b1 = (size_t)(m >> (64 - ws->bloom_bits));
	size_t b2 = (size_t)(m >> 8) & (((size_t)1 << ws->bloom_bits) - 1);
	return (ws->bloom[b1 / 64] >> (b1 % 64)) & (ws->bloom[b2 / 64] >> (b2 % 64)) & 1;
}

static void ws_mark(struct rb_winset *ws, uint64_t h)
{
	uint64_t m = h * WS_MIX;
	size_t b1 = (size_t)(m >> (64 - ws->bloom_bits));
	size_t b2 = (size_t)(m >> 8) & (((size_t)1 << ws->bloom_bits) - 1);
	ws->bloom[b1 / 64] |= 1ULL << (b1 % 64);
	ws->bloom[b2 / 64] |= 1ULL << (b2 % 64);
}

/* The window's index, or -1. */
static long ws_find(const struct rb_winset *ws, uint64_t h, const char *p)
{
	for (size_t s = ws_slot(ws, h);; s = (s + 1) & ws->mask) {
		if (!ws->idx[s])
			return -1;
		if (ws->hv[s] == h && !memcmp(ws->bytes + (ws->idx[s] - 1) * ws->w, p, ws->w))
			return (long)ws->idx[s] - 1;
	}
}

static void ws_add(struct rb_winset *ws, const unsigned char *p)
{
	uint64_t h = ws_hash(p, ws->w);
	if (ws_find(ws, h, (const char *)p) >= 0)
		return;
	size_t s = ws_slot(ws, h);
	while (ws->idx[s])
		s = (s + 1) & ws->mask;
	memcpy(ws->bytes + ws->n * ws->w, p, ws->w);
	ws->hv[s] = h;
	ws->idx[s] = (uint32_t)++ws->n;
	ws_mark(ws, h);
	for (size_t k = 0; k < ws->w; k++)
		ws->ok[p[k]] = 1;
}

static size_t ws_stride(size_t len, size_t w)
{
	size_t s = 1 + len / WS_SAMPLE;
	return s < w ? s : w;
}

struct rb_winset *rb_winset_new(size_t w, const char *const *strs, const size_t *lens, size_t n)
{
	struct rb_winset *ws = rb_xcalloc(1, sizeof(*ws));
	ws->w = w;
	ws->bw = 1;
	for (size_t i = 0; i < w; i++)
		ws->bw *= WS_BASE;
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		if (lens[i] >= w)
			total += (lens[i] - w) / ws_stride(lens[i], w) + 2;
	size_t cap = 16;
	while (cap < 2 * total)
		cap *= 2;
	ws->mask = cap - 1;
	ws->hv = rb_xcalloc(cap, sizeof(*ws->hv));
	ws->idx = rb_xcalloc(cap, sizeof(*ws->idx));
	ws->bytes = rb_xmalloc(total * w + 1);
	for (ws->bloom_bits = WS_BLOOM_MIN; ws->bloom_bits < WS_BLOOM_MAX &&
	     ((size_t)1 << ws->bloom_bits) < 16 * total; ws->bloom_bits++)
		;
	ws->bloom = rb_xcalloc((size_t)1 << (ws->bloom_bits - 6), sizeof(*ws->bloom));
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = (const unsigned char *)strs[i];
		if (lens[i] < w)
			continue;
		size_t step = ws_stride(lens[i], w), last = lens[i] - w;
		for (size_t o = 0;; o += step) {
			if (o > last)
				o = last;       /* and the last window, whatever the stride */
			ws_add(ws, p + o);
			if (o == last)
				break;
		}
	}
	return ws;
}

void rb_winset_free(struct rb_winset *ws)
{
	if (!ws)
		return;
	explicit_bzero(ws->bytes, ws->n * ws->w);
	free(ws->hv);
	free(ws->idx);
	free(ws->bytes);
	free(ws->bloom);
	free(ws);
}

size_t rb_winset_count(const struct rb_winset *ws)
{
	return ws ? ws->n : 0;
}

void rb_winset_scan(const struct rb_winset *ws, const char *s, size_t len, rb_lit_hit_fn hit,
		    void *ud)
{
	if (!ws || !ws->n || len < ws->w)
		return;
	const unsigned char *p = (const unsigned char *)s;
	size_t w = ws->w, run = 0;
	uint64_t h = 0;
	for (size_t i = 0; i < len; i++) {
		if (!ws->ok[p[i]]) {
			run = 0;
			continue;
		}
		/* The hash covers the run's last w bytes only: a new run starts afresh. */
		if (run == 0)
			h = p[i];
		else if (run < w)
			h = h * WS_BASE + p[i];
		else
			h = h * WS_BASE + p[i] - ws->bw * p[i - w];
		if (++run < w)
			continue;
		if (!ws_maybe(ws, h))
			continue;
		if (ws_find(ws, h, s + i + 1 - w) >= 0)
			hit(ud, i + 1 - w, i + 1);
	}
}
