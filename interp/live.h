/*
 * The live terminal view of a run, for `runbook run` on a TTY.  It turns the
 * engine's events into text; it never reads the clock, the terminal size or
 * the environment (the caller passes them), and never locks (see below).
 *
 * The screen: permanent lines scroll as usual; under them a footer of at most
 * RB_LIVE_MAX_ROWS running steps (oldest first), a "… and K more" line when
 * more run, and a summary line:
 *
 *   run 20260101-000000-ab12: deploy, 38 steps (state in .runbook/runs/…)
 *   build| compiling main.c
 *   ✓ build 12.3s
 *   ✗ test failed after 3.1s: exit status 2
 *   - docs skipped: condition is false
 *   ↻ fetch: attempt 1 of 3 failed: timeout; retrying in 2s
 *   ⠹ migrate  1m02s  applying 0042_users.sql            <- the footer
 *   ↻ fetch   retry 2 in 1.4s
 *   [12/38] 2 running, 1 failed, 1 skipped · 1m05s
 *
 * Permanent lines: run start and finish, a line per finished step (✓
 * succeeded with its duration, ✗ failed with the error, - skipped and why,
 * ! interrupted, other statuses by name), output lines (`ID| line`, `ID! line`
 * for stderr; dim in colour), retries, rollback, interrupt, timeout, errors,
 * and the text of events the view does not know.
 *
 * Escape sequences: a redraw is one write of "\r", "\x1b[NA" (up N rows, left
 * out when N is 0: many terminals read 0 as 1), "\x1b[J" (clear to the end of
 * the screen), the new permanent lines, then the footer.  The footer's rows
 * are separated by "\n" and the cursor rests at the end of the last one, so
 * N is its row count less one.  Colour (only when asked) is SGR "\x1b[...m".
 * Footer rows are cut to width - 1 columns (counted in characters, East Asian
 * wide ones as two, combining ones as none), so that they never wrap and the
 * cursor never sits in a terminal's pending-wrap column.  Text from commands
 * and messages is made harmless first: escape sequences (CSI, OSC, others) are
 * dropped, other C0 and C1 controls and DEL become '?', invalid UTF-8 becomes
 * U+FFFD, and of a line with carriage returns only what follows the last is
 * kept (what a progress bar leaves on a terminal).  The footer needs as many
 * rows as it has lines (at most RB_LIVE_MAX_ROWS + 2); a terminal that
 * reflows its lines when narrowed may leave a stale footer row behind.
 *
 * Rate limit: the screen is written at most once per RB_LIVE_INTERVAL_MS.  An
 * event that comes sooner after the last write is only recorded: its lines
 * wait, with those of the events after it, for the next tick (or the next
 * event past the interval), which writes them all at once.  The end of a run,
 * an interrupt, a timeout and an error are written at once, as are pending
 * lines beyond 64 KiB.  A tick that would write nothing new writes nothing.
 *
 * Threads: the engine calls every function with its output mutex held, from
 * any thread; the view keeps no state outside its struct and takes no lock.
 * The event's strings are printed: the caller redacts them as it does for
 * --output json (ev) and text mode (text).
 */
#ifndef RB_LIVE_H
#define RB_LIVE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define RB_LIVE_INTERVAL_MS     100     /* at most one write per interval */
#define RB_LIVE_MAX_ROWS        8       /* running steps shown in the footer */

struct rb_live;

/*
 * out: the terminal (borrowed; flushed after each write).  width: its columns
 * (below 2: taken as 80).  color: use colour.  nsteps: the main steps, for
 * the summary's [done/total] (run_started's "steps" replaces it).
 */
struct rb_live *rb_live_new(FILE *out, int width, int color, size_t nsteps);

/*
 * One engine event: ev is the JSON object --output json prints ("event" names
 * it; "time" and "run" are not needed), text the line text mode prints for it
 * (may be NULL).  now_ms: a monotonic clock in milliseconds.
 */
void rb_live_event(struct rb_live *lv, const json_t *ev, const char *text, int64_t now_ms);

/* Called every ~100 ms: redraw elapsed times and spinners when due. */
void rb_live_tick(struct rb_live *lv, int64_t now_ms);

/* The terminal has width columns now; the next write uses them. */
void rb_live_resize(struct rb_live *lv, int width);

/*
 * Write the pending lines and erase the footer, leaving the cursor where the
 * footer began (before a prompt, or before anything else writes to the
 * terminal).  The next event or tick draws the footer again.
 */
void rb_live_suspend(struct rb_live *lv);

/* Write the pending lines, erase the footer for good, and free lv (NULL is fine). */
void rb_live_free(struct rb_live *lv);

#endif
