/*
 * Splitting a long markdown document into parts that each fit in one
 * comment (GitHub takes 65,536 characters): `runbook plan --diff --split`.
 * Cuts fall between lines, or inside a fenced code block anywhere (at a
 * character's boundary): a fence open at a cut is closed there and opened
 * again, with its info string, at the top of the next part, and so is a
 * <details> block (its <summary> line repeated).  Parts after the first
 * begin with "<sub>part I of N</sub>", parts before the last end with
 * "<sub>continued in part I+1 of N</sub>".  The text is split as it is: a
 * caller redacts it before, so that no cut can part a secret from the
 * pattern that hides it.
 */
#ifndef RB_MDSPLIT_H
#define RB_MDSPLIT_H

#include <stddef.h>

#include "util.h"

enum { RB_MDSPLIT_MIN = 1024, RB_MDSPLIT_DEFAULT = 60000 };

/*
 * Split md[0, len) into parts of at most max bytes each (at least
 * RB_MDSPLIT_MIN), pushed on parts (malloc'd, each ending with a newline).
 * One part, unchanged, when it fits.  -1 with *err set (malloc'd) when a
 * line outside a fence is too long for a part, which the plan diff never
 * writes.
 */
int rb_md_split(const char *md, size_t len, size_t max, struct rb_strv *parts, char **err);

#endif
