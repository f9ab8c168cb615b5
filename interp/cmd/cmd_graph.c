/*
 * runbook graph FILE [--format dot|mermaid]: the step graph for Graphviz or
 * Mermaid.  Edges from `needs` are solid, edges from references dotted; undo
 * and on_failure steps are drawn apart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "graph.h"
#include "runbook.h"
#include "util.h"

static int is_need(const struct rb_step *s, size_t dep)
{
	for (size_t i = 0; i < s->nneeds; i++)
		if (s->needs[i] == dep)
			return 1;
	return 0;
}

static void dot_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		if (*s == '\n')
			fputs("\\n", stdout);
		else
			putchar(*s);
	}
	putchar('"');
}

static const char *label_action(const struct rb_step *s)
{
	if (s->run)
		return "run";
	if (s->lua)
		return "lua";
	return s->action ? s->action->name : "?";
}

/* A gate, or one its approve expression may make: approve: false is none. */
static int gated(const struct rb_step *s)
{
	return s->approve && !(s->approve->type == RB_SCALAR &&
			       rb_scalar_kind(s->approve) == RB_K_BOOL &&
			       (s->approve->str[0] == 'f' || s->approve->str[0] == 'F'));
}

static void dot_node(const struct rb_step *s, const char *indent)
{
	char *label = rb_xasprintf("%s\n%s%s", s->id, label_action(s),
				   gated(s) ? " (gate)" : "");
	printf("%s", indent);
	dot_str(s->id);
	fputs(" [label=", stdout);
	dot_str(label);
	if (s->kind == RB_UNDO)
		fputs(", style=dashed", stdout);
	else if (gated(s))
		fputs(", style=bold", stdout);
	if (s->for_each)
		fputs(", peripheries=2", stdout);
	puts("];");
	free(label);
}

static void dot_edges(const struct rb_runbook *rb, const struct rb_step *s, const char *indent)
{
	for (size_t j = 0; j < s->ndeps; j++) {
		printf("%s", indent);
		dot_str(rb->steps[s->deps[j]]->id);
		fputs(" -> ", stdout);
		dot_str(s->id);
		puts(is_need(s, s->deps[j]) ? ";" : " [style=dotted];");
	}
}

static void dot(const struct rb_runbook *rb)
{
	fputs("digraph ", stdout);
	dot_str(rb->name ? rb->name : "runbook");
	puts(" {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];");
	for (size_t i = 0; i < rb->nsteps; i++)
		if (rb->steps[i]->kind == RB_MAIN)
			dot_node(rb->steps[i], "  ");
	for (size_t i = 0; i < rb->nsteps; i++)
		if (rb->steps[i]->kind == RB_MAIN)
			dot_edges(rb, rb->steps[i], "  ");
	for (size_t i = 0; i < rb->nsteps; i++) {
		const struct rb_step *s = rb->steps[i];
		if (s->kind != RB_UNDO)
			continue;
		dot_node(s, "  ");
		fputs("  ", stdout);
		dot_str(s->parent->id);
		fputs(" -> ", stdout);
		dot_str(s->id);
		puts(" [style=dashed, label=\"undo\"];");
	}
	if (rb->non_failure) {
		puts("  subgraph cluster_on_failure {\n    label=\"on_failure\";\n    style=dashed;");
		for (size_t i = 0; i < rb->nsteps; i++)
			if (rb->steps[i]->kind == RB_ON_FAILURE)
				dot_node(rb->steps[i], "    ");
		for (size_t i = 0; i < rb->nsteps; i++)
			if (rb->steps[i]->kind == RB_ON_FAILURE)
				dot_edges(rb, rb->steps[i], "    ");
		puts("  }");
	}
	puts("}");
}

/* Mermaid ids get a prefix: words such as "graph" or "style" are keywords. */
static void mermaid_node(const struct rb_step *s, const char *indent)
{
	printf("%ss_%s%s\"%s<br/>%s%s\"%s\n", indent, s->id,
	       s->kind == RB_UNDO ? "[/" : gated(s) ? "{{" : "[", s->id, label_action(s),
	       gated(s) ? " (gate)" : "",
	       s->kind == RB_UNDO ? "/]" : gated(s) ? "}}" : "]");
}

static void mermaid_edges(const struct rb_runbook *rb, const struct rb_step *s,
			  const char *indent)
{
	for (size_t j = 0; j < s->ndeps; j++)
		printf("%ss_%s %s s_%s\n", indent, rb->steps[s->deps[j]]->id,
		       is_need(s, s->deps[j]) ? "-->" : "-.->", s->id);
}

static void mermaid(const struct rb_runbook *rb)
{
	puts("flowchart TD");
	for (size_t i = 0; i < rb->nsteps; i++)
		if (rb->steps[i]->kind == RB_MAIN)
			mermaid_node(rb->steps[i], "  ");
	for (size_t i = 0; i < rb->nsteps; i++)
		if (rb->steps[i]->kind == RB_MAIN)
			mermaid_edges(rb, rb->steps[i], "  ");
	for (size_t i = 0; i < rb->nsteps; i++) {
		const struct rb_step *s = rb->steps[i];
		if (s->kind != RB_UNDO)
			continue;
		mermaid_node(s, "  ");
		printf("  s_%s -. undo .-> s_%s\n", s->parent->id, s->id);
	}
	if (rb->non_failure) {
		puts("  subgraph on_failure");
		for (size_t i = 0; i < rb->nsteps; i++)
			if (rb->steps[i]->kind == RB_ON_FAILURE)
				mermaid_node(rb->steps[i], "    ");
		for (size_t i = 0; i < rb->nsteps; i++)
			if (rb->steps[i]->kind == RB_ON_FAILURE)
				mermaid_edges(rb, rb->steps[i], "    ");
		puts("  end");
	}
}

int cmd_graph(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{'f', "format", 1}, {0, NULL, 0}};
	struct rb_optparse p;
	const char *file = NULL, *format = "dot";
	int k;
	rb_opt_init(&p, "graph", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR)
			return RB_EXIT_INVALID;
		if (k == RB_OPT_HELP) {
			rb_print_usage("graph", stdout);
			return RB_EXIT_OK;
		}
		if (k == RB_OPT_ARG) {
			if (file)
				return rb_usage_error("graph: one file at a time");
			file = p.val;
		} else {
			format = p.val;
		}
	}
	if (strcmp(format, "dot") && strcmp(format, "mermaid"))
		return rb_usage_error("graph: unknown format '%s' (expected dot or mermaid)",
				      format);
	if (!file)
		return rb_usage_error("graph: no file given (usage: runbook graph FILE)");
	struct rb_runbook *rb;
	int rc = rb_cli_load(file, &rb);
	if (rc != RB_EXIT_OK)
		return rc;
	if (!strcmp(format, "dot"))
		dot(rb);
	else
		mermaid(rb);
	rb_runbook_free(rb);
	return RB_EXIT_OK;
}
