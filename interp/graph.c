/*
 * Orders the steps.  Kahn's algorithm over the dependency edges gives each
 * step its stage (one more than its deepest dependency) in O(steps + edges);
 * whatever it cannot order lies on or behind a cycle, which a depth-first
 * search then names.
 */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct kindset {
	size_t first, n;        /* steps[first .. first+n) */
};

static struct kindset kind_range(const struct rb_runbook *rb, enum rb_step_kind k)
{
	struct kindset r = {0, 0};
	if (k == RB_MAIN)
		r.n = rb->nmain;
	else if (k == RB_ON_FAILURE)
		r.first = rb->nmain, r.n = rb->non_failure;
	else
		r.first = rb->nmain + rb->non_failure, r.n = rb->nsteps - r.first;
	return r;
}

static void report_cycle(struct rb_runbook *rb, struct rb_diags *d, size_t *path,
			 size_t len)
{
	struct rb_buf b;
	rb_buf_init(&b);
	/* path[i] depends on path[i+1]; the last depends on the first. */
	for (size_t i = 0; i < len; i++)
		rb_buf_printf(&b, "%s -> ", rb->steps[path[i]]->id);
	rb_buf_puts(&b, rb->steps[path[0]]->id);
	const struct rb_step *s = rb->steps[path[0]];
	const struct rb_node *id = rb_map_get(s->node, "id");
	rb_error_at(d, id ? id : s->node, "dependency cycle: %s (each step needs the next)",
		    b.s);
	rb_buf_release(&b);
}

/* Iterative DFS over the unordered steps; reports each cycle it closes. */
static void find_cycles(struct rb_runbook *rb, struct rb_diags *d, struct kindset ks,
			const unsigned char *done)
{
	unsigned char *color = rb_xcalloc(ks.n, 1);      /* 0 new, 1 on path, 2 left */
	size_t *stack = rb_xmalloc(ks.n * sizeof(*stack));
	size_t *edge = rb_xmalloc(ks.n * sizeof(*edge));
	for (size_t root = 0; root < ks.n; root++) {
		if (done[root] || color[root])
			continue;
		size_t sp = 0;
		stack[sp] = root;
		edge[sp++] = 0;
		color[root] = 1;
		while (sp) {
			size_t v = stack[sp - 1];
			const struct rb_step *s = rb->steps[ks.first + v];
			if (edge[sp - 1] == s->ndeps) {
				color[v] = 2;
				sp--;
				continue;
			}
			size_t w = s->deps[edge[sp - 1]++] - ks.first;
			if (done[w] || color[w] == 2)
				continue;
			if (color[w] == 1) {
				size_t i = sp;
				while (i > 0 && stack[i - 1] != w)
					i--;
				size_t *path = rb_xmalloc((sp - i + 1) * sizeof(*path));
				for (size_t j = i - 1; j < sp; j++)
					path[j - (i - 1)] = ks.first + stack[j];
				report_cycle(rb, d, path, sp - i + 1);
				free(path);
				continue;
			}
			color[w] = 1;
			stack[sp] = w;
			edge[sp++] = 0;
		}
	}
	free(color);
	free(stack);
	free(edge);
}

static int layer(struct rb_runbook *rb, struct rb_diags *d, enum rb_step_kind kind,
		 int *nstages)
{
	struct kindset ks = kind_range(rb, kind);
	*nstages = 0;
	if (!ks.n)
		return 0;
	/* Successor lists in compressed form: succ[off[v] .. off[v+1]). */
	size_t *indeg = rb_xcalloc(ks.n, sizeof(*indeg));
	size_t *off = rb_xcalloc(ks.n + 1, sizeof(*off));
	size_t edges = 0;
	for (size_t v = 0; v < ks.n; v++) {
		const struct rb_step *s = rb->steps[ks.first + v];
		indeg[v] = s->ndeps;
		for (size_t j = 0; j < s->ndeps; j++)
			off[s->deps[j] - ks.first + 1]++;
		edges += s->ndeps;
	}
	for (size_t v = 0; v < ks.n; v++)
		off[v + 1] += off[v];
	size_t *succ = rb_xmalloc((edges ? edges : 1) * sizeof(*succ));
	size_t *fill = rb_xmalloc((ks.n + 1) * sizeof(*fill));
	memcpy(fill, off, (ks.n + 1) * sizeof(*fill));
	for (size_t v = 0; v < ks.n; v++) {
		const struct rb_step *s = rb->steps[ks.first + v];
		for (size_t j = 0; j < s->ndeps; j++)
			succ[fill[s->deps[j] - ks.first]++] = v;
	}

	size_t *queue = rb_xmalloc(ks.n * sizeof(*queue));
	unsigned char *done = rb_xcalloc(ks.n, 1);
	size_t head = 0, tail = 0;
	for (size_t v = 0; v < ks.n; v++) {
		rb->steps[ks.first + v]->stage = 0;
		if (!indeg[v])
			queue[tail++] = v;
	}
	while (head < tail) {
		size_t v = queue[head++];
		struct rb_step *s = rb->steps[ks.first + v];
		done[v] = 1;
		if (s->stage + 1 > *nstages)
			*nstages = s->stage + 1;
		for (size_t j = off[v]; j < off[v + 1]; j++) {
			size_t w = succ[j];
			struct rb_step *t = rb->steps[ks.first + w];
			if (t->stage < s->stage + 1)
				t->stage = s->stage + 1;
			if (--indeg[w] == 0)
				queue[tail++] = w;
		}
	}
	int rc = 0;
	if (tail < ks.n) {
		find_cycles(rb, d, ks, done);
		rc = -1;
	}
	free(indeg);
	free(off);
	free(succ);
	free(fill);
	free(queue);
	free(done);
	return rc;
}

int rb_graph_build(struct rb_runbook *rb, struct rb_diags *d)
{
	int rc = layer(rb, d, RB_MAIN, &rb->nstages);
	rc |= layer(rb, d, RB_ON_FAILURE, &rb->nfail_stages);
	return rc;
}

static int by_stage(const void *pa, const void *pb)
{
	const struct rb_step *a = *(struct rb_step *const *)pa;
	const struct rb_step *b = *(struct rb_step *const *)pb;
	if (a->stage != b->stage)
		return a->stage < b->stage ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

struct rb_step **rb_graph_order(const struct rb_runbook *rb, enum rb_step_kind kind,
				size_t *n)
{
	struct kindset ks = kind_range(rb, kind);
	struct rb_step **v = rb_xmalloc((ks.n ? ks.n : 1) * sizeof(*v));
	memcpy(v, rb->steps + ks.first, ks.n * sizeof(*v));
	if (kind != RB_UNDO)
		qsort(v, ks.n, sizeof(*v), by_stage);
	*n = ks.n;
	return v;
}
