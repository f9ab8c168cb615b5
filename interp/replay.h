/*
 * A run's audit records read back as a model of what happened (runbook
 * replay): its sessions, and per step its attempts, calls, outputs, gate and
 * failures, with times as offsets from the run's first record; and the
 * model rendered as a postmortem timeline.  It verifies nothing (the caller
 * verifies the log first) and interprets the engine's record types
 * (interp/sched.c, interp/exec.c, interp/exec_svc.c) and nothing else.
 */
#ifndef RB_REPLAY_H
#define RB_REPLAY_H

#include <stdio.h>

#include <jansson.h>

#define RB_REPLAY_VERSION       1       /* the model's "format_version" */

/*
 * The model of one run, built from records (a JSON array of the run's audit
 * records as they are in the log, in seq order, all of one run_id; borrowed).
 * Every time is an offset in ms from the ts of records[0] ("offset_ms"); it
 * can be negative when the clock stepped back.  Values the log holds as JSON
 * text (params, vars, args, calls, output, outputs: RB_RECORD_TEXT_KEYS) are
 * decoded.  A key marked "?" is absent when the log does not say.
 *
 * {
 *   "format_version": 1,
 *   "run": {
 *     "run_id", "runbook"?, "file"?, "sha256"? (of the runbook file),
 *     "params"? (decoded), "user"?, "host"?, "version"? (of the first session),
 *     "secrets": ["NAME", ...] (secrets the run read, sorted; never values),
 *     "started": ts of the first record, "ended": ts of the last,
 *     "duration_ms": last minus first,
 *     "status": the last run_finished's status (succeeded, failed,
 *       interrupted, paused), or "crashed" when the last session crashed,
 *       or "unfinished" when the log ends inside a session,
 *     "records": N, "key_ids": [ids of the keys that signed, first use first],
 *     "sessions": [{                  one per run_started / run_resumed
 *       "session": 1, 2, ...,
 *       "kind": "started" | "resumed",
 *       "ts", "offset_ms", "user"?, "host"?, "version"?, "pid"?,
 *       "sha256"? (of the runbook the session ran), "journal_torn"? (resumed),
 *       "ended": "finished" | "crashed" | "open",
 *       "status"? (the run_finished's, when finished),
 *       "end_ts", "end_offset_ms": the run_finished, or for a crashed or
 *         open session its last record (a crash leaves no record of its time),
 *       "repairs"? [{"ts", "offset_ms", "offset", "length", "sha256"}]: torn
 *         tails this session left, cut off by the next one (log_repaired)
 *     }]
 *   },
 *   "steps": [{                       in order of the step's first record
 *     "step": id,
 *     "status": the last step_finished's status (succeeded, failed, skipped,
 *       satisfied, interrupted, ...), or when none came after the step's last
 *       record: "awaiting_approval" (at its gate), "crashed" (its session
 *       crashed) or "unfinished",
 *     "offset_ms": the step's first record (step_started, gate_waiting, or
 *       step_finished for a step that never started: skipped),
 *     "end_offset_ms"?, "duration_ms"?: the last step_finished and the
 *       duration it gives (from the step's start in that session, or from its
 *       approval; none for a skipped step),
 *     "error"?, "output"?, "outputs"?, "taken_as_done"?, "continued"?: of the
 *       last step_finished (taken_as_done: resume --skip took it as done;
 *       continued: it failed and, by continue_on_error, the run went on),
 *     "attempts": [{                  every step_started, in order
 *       "attempt": N, the engine's number (a resume that runs again a step
 *         that was in flight starts again at the number it had: an attempt
 *         number can repeat, and the LAST entry with a number is the one the
 *         run kept),
 *       "session": the session it ran in,
 *       "offset_ms", "end_offset_ms"?,
 *       "status": the step_finished that ended it, "failed" when a
 *         step_retry followed, "crashed" when its session crashed first,
 *         else "unfinished",
 *       "error"?: of that step_finished or step_retry,
 *       "retried"?: true when a step_retry followed,
 *       "action"?: the action (absent for inline actions, lua and assert,
 *         which write no action records: their step's output says it all),
 *       "for_each"?: true when the action ran once per item,
 *       "calls": [CALL, ...]: one per call, at its index (index 0 for a step
 *         without for_each); [] without an action
 *     }],
 *     "items"?: [{"index", "status", "sha256" (of the item), "output"?,
 *       "error"?, "session", "attempt"}]: for_each items by index, the last
 *       item_finished of each,
 *     "gate"?: {"prompt", "ts", "offset_ms" (the gate_waiting; absent when
 *       approved in advance), "decision": "approved" | "rejected" | "waiting",
 *       "by"?, "via"? (--approve, terminal), "decided_ts"?,
 *       "decided_offset_ms"?, "waited_ms"? (from waiting to the decision)},
 *     "checks"?: [{"session", "offset_ms", "action", "calls": [CALL, ...]}]:
 *       each run of the step's check (its status says whether the effect
 *       was in place: succeeded means the step was satisfied)
 *   }]
 * }
 *
 * CALL: {"index", "args"? (decoded, as the action got them: secrets are
 * not in them), "status"? (succeeded, failed, timed_out, interrupted; absent
 * when no action_result was recorded: its session crashed), "exit_code"?,
 * "duration_ms"?, "offset_ms"? (of the result), "output_sha256"?, "error"?,
 * "output"?}.  "output" is the call's output decoded, present only when the
 * log holds it (the step_finished of a call without for_each, the
 * item_finished of an item) as text whose SHA-256 is the result's
 * output_sha256: what a simulation can give back for that call.
 *
 * To look a call up (for replay --simulate): steps[] by "step", its
 * "attempts" by "attempt" (the last entry with that number), its "calls" by
 * "index".
 *
 * NULL with *err when records is not an array of objects of one run.  The
 * caller may add keys to the model (runbook replay adds "verified").
 */
json_t *rb_replay_model(const json_t *records, char **err);

/*
 * Print model to out as "text" (aligned columns, for a terminal), "markdown"
 * (tables and sections to paste into a postmortem) or "json" (the model,
 * indented).  Strings from the log never reach the terminal raw: control,
 * C1 and bidirectional characters are escaped.  -1 with *err for an unknown
 * format or a write error.
 */
int rb_replay_render(const json_t *model, const char *format, FILE *out, char **err);

#endif
