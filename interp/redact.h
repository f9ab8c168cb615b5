/*
 * Redaction: what a run writes or prints (journal, checkpoint, audit log,
 * console, error messages, Lua tracebacks, replay output) goes through one
 * redactor, which replaces secret values, sensitive outputs and configured
 * patterns (e-mail addresses and phone numbers by default: the PII the
 * DocuID guide wants masked in logs).  It knows nothing of runs or steps; the
 * engine decides what to register and what to pass through it.
 *
 * What is found
 *   A secret (rb_redactor_add_secret) is found in these forms, each replaced
 *   by RB_REDACT_MASK ("***"):
 *   - as is, and without its trailing CR/LF (a secret file usually ends in
 *     a newline that `echo $X` does not print);
 *   - JSON-escaped as a string's inside, once and twice (JSON in a JSON
 *     string): jansson's escapes and the common variants, \u00XX in upper
 *     and lower case, '/' as "\/", non-ASCII and DEL as \u escapes (Python's
 *     ensure_ascii);
 *   - URL-encoded with any set of characters left as is and either hex
 *     case: each line that holds a %XX escape is also searched percent-
 *     decoded, and the form encoding's '+' for a space is registered;
 *   - hex (lower and upper case), and base64, standard and URL-safe, padded
 *     or not, also inside the encoding of a larger blob: base64 of bytes at
 *     an offset depends on the offset modulo 3, so the characters that the
 *     value alone determines are registered for each of the 3 alignments.
 *     Encodings are found by any piece of at least RB_REDACT_FRAG characters,
 *     so that base64 wrapped at 64 or 76 columns (PEM, MIME, base64(1)) is
 *     caught line by line; at most RB_REDACT_FRAG - 1 characters of the
 *     encoding can remain at each edge of a wrapped piece (for values over
 *     4 KiB, whose encodings are sampled to bound memory, up to about 2 *
 *     RB_REDACT_FRAG), and an encoding shorter than that is registered whole;
 *   - for a multi-line value, each line on its own with its surrounding
 *     blanks trimmed (so every body line of a PEM key is caught when printed
 *     alone), in the forms above but hex and base64; lines shorter than
 *     RB_REDACT_PART_LEN are not registered (a secret's short lines are "}",
 *     "OK", "done": hidden everywhere they would garble the output, and
 *     shown they reveal next to nothing), nor PEM armour lines
 *     ("-----BEGIN RSA PRIVATE KEY-----"): they are not secret, and hiding
 *     them would also hide the armour of public certificates printed
 *     elsewhere, while showing them tells the reader what was redacted;
 *     nor comment lines ("# the database password"), which describe.  In
 *     "KEY=VALUE" and "key: value" lines (env files, YAML) the value alone,
 *     unquoted, if at least RB_REDACT_PART_LEN long;
 *   - for a value that is a JSON object or array (a service-account key, a
 *     docker config), also each string in it of at least RB_REDACT_PART_LEN
 *     bytes as a secret of its own, so that a private key stays hidden when
 *     the document is parsed and its fields printed.  Its short or public
 *     fields ("type": "service_account") are then hidden elsewhere too.
 *   A value longer than RB_REDACT_BIG (a large sensitive output) is found
 *   whole only, as is and JSON-escaped: its lines and encodings would be too
 *   many to register, and its lines too common to hide everywhere.
 *   A pattern (rb_redactor_add_pattern) is a POSIX extended regular
 *   expression matched line by line ('.' never matches a newline; ^ and $
 *   match at the ends of each line), in the text and in its percent-decoded
 *   form; each match is replaced by "<NAME>".  Patterns are not looked for
 *   inside hex or base64.
 *
 * How it is replaced
 *   Every occurrence of every form is found, overlapping ones too, and each
 *   run of overlapping or adjacent matches becomes one placeholder ("***"
 *   when a secret is part of it, else the first pattern's "<NAME>"), so no
 *   piece of a secret survives next to a mask.  A match that starts or ends
 *   inside a UTF-8 sequence is widened to the whole character: valid UTF-8
 *   in gives valid UTF-8 out.  Text may hold NUL bytes and invalid UTF-8.
 *   The cost is linear in the text: one Aho–Corasick pass for all the
 *   literal forms (those over 512 bytes are compared whole where their
 *   first 512 bytes are seen), one rolling-hash pass for the encodings, and
 *   the patterns' regexec on the pieces of a line that could hold a match.
 *
 * The audit log
 *   Where it must prove which secret a step used, it records rb_hmac_hex of
 *   the value under a key of the run's, never the value.  The redactor keeps
 *   the values and their forms in memory until rb_redactor_free, which
 *   wipes them.
 *
 * Streaming
 *   The engine redacts command output line by line.  A secret cannot span
 *   two calls, except a multi-line one, whose lines are registered one by
 *   one for this reason; a single-line secret split over two calls (a
 *   partial write) is not found.  So text that must be cut (a line too
 *   long to hold, the end of what a step keeps in memory) is cut where
 *   rb_redact_cut says: never inside a match, with room after the cut for
 *   the longest match that could start before it.  That room is the
 *   longest literal form (three times over: percent-encoded), at least
 *   RB_REDACT_PATTERN_REACH when there are patterns, at most
 *   RB_REDACT_REACH_MAX: a pattern's match longer than the first, or a
 *   value whose forms are longer than the last (a huge sensitive output),
 *   can still be cut in two where a line is longer than that.
 *
 * Threads
 *   Every function may be called from any thread at any time.  After the
 *   last add, any number of threads may redact at once; an add (a sensitive
 *   output known only when its step ends) waits for redactions under way,
 *   and the next redaction rebuilds the matchers.  rb_redactor_seal builds
 *   them ahead of time so that the first redaction does not pay for it.
 *   regexec serialises the calls on one pattern (glibc locks a regex_t).
 */
#ifndef RB_REDACT_H
#define RB_REDACT_H

#include <stddef.h>

#include <jansson.h>

#define RB_REDACT_MASK          "***"
/* Shorter secrets would be found inside ordinary words: refused (as the engine does). */
#define RB_REDACT_MIN_LEN       4
/* Lines, values in lines and strings in JSON shorter than this are not registered alone. */
#define RB_REDACT_PART_LEN      8
/* Longer values are found whole only. */
#define RB_REDACT_BIG           65536
/* Hex and base64 forms are found by any piece this long. */
#define RB_REDACT_FRAG          12
/* What rb_redact_cut leaves after a cut for a pattern's match, and at most for any. */
#define RB_REDACT_PATTERN_REACH 4096
#define RB_REDACT_REACH_MAX     (1024 * 1024)
/* A pattern's name: 1 to this many of [a-z0-9_-]. */
#define RB_REDACT_NAME_MAX      32

struct rb_redactor;

struct rb_redactor *rb_redactor_new(void);
void rb_redactor_free(struct rb_redactor *r);

/*
 * Registers the len bytes of value (a secret or a sensitive output; NUL bytes
 * allowed) in all the forms above.  -1 when it is shorter than
 * RB_REDACT_MIN_LEN: then nothing is registered, and the caller must keep the
 * value out of the output some other way (the engine masks a short
 * sensitive output whole).  Registering a value twice costs nothing.
 */
int rb_redactor_add_secret(struct rb_redactor *r, const char *value, size_t len);

/*
 * Registers a POSIX extended regular expression; its matches become "<name>".
 * -1 with *err (malloc'd; the caller frees it) when the name is not 1 to
 * RB_REDACT_NAME_MAX of [a-z0-9_-] or the expression does not compile.  An
 * expression that matches the empty string finds nothing there.
 */
int rb_redactor_add_pattern(struct rb_redactor *r, const char *name, const char *ere, char **err);

/*
 * The default patterns, "email" and "phone", with checks that a regular
 * expression cannot make: a phone number is "+" and a country code then 8 to
 * 15 digits in all ("+49 30 1234567", "+1 (555) 123-4567", "+14155552671"),
 * or a North American number ("(555) 123-4567", "555-123-4567",
 * "1-555-123-4567", with one kind of separator, not blanks: "571 612 1056"
 * is as often a list), or a European national one with a leading 0
 * ("030 1234567", "(030) 1234567", "01 23 45 67 89"); never glued to
 * letters, digits or a dotted, dashed or colon'd token around it, nor one of
 * a list of numbers or a hex dump, so that timestamps, run ids, versions, IP
 * addresses, ports, sizes, PIDs, hashes, UUIDs, dates and timezone offsets
 * stay.  An e-mail address is local@domain.tld, but not
 * "git@github.com:org/repo" nor a systemd instance ("getty@tty1.service")
 * nor a file ("icon@2x.png").  ssh's "user@host.example.com" is hidden like
 * an address.
 */
int rb_redactor_add_default_patterns(struct rb_redactor *r);

/* Builds the matchers now rather than at the next redaction (optional). */
void rb_redactor_seal(struct rb_redactor *r);

/*
 * A malloc'd copy of s[0, len) with every match replaced, NUL-terminated;
 * its length in *outlen when outlen is not NULL.  Never NULL.
 */
char *rb_redact(const struct rb_redactor *r, const char *s, size_t len, size_t *outlen);

/*
 * Where s[0, len), the start of a text that goes on, can be cut: the
 * largest c, at least the redactor's reach (above) before len, that is
 * inside no match and no UTF-8 character, so that s[0, c) redacted alone
 * hides every secret in it whole, whatever follows.  0 when there is none
 * yet: give more of the text.
 */
size_t rb_redact_cut(const struct rb_redactor *r, const char *s, size_t len);

/*
 * A deep copy of v (NULL gives null) with every string and object key
 * redacted.  A number whose text holds a secret becomes the redacted
 * string; true, false and null are kept.  Two keys that redact to the same
 * text are kept apart as "<email>", "<email> (2)", ...
 */
json_t *rb_redact_json(const struct rb_redactor *r, const json_t *v);
/*
 * The same, but what has nothing to redact is shared, not copied: v itself
 * (a new reference) when nothing in it changed, else a new value that may
 * share v's unchanged parts.  For a caller that only reads the result, or
 * sets members of the top object it owns.
 */
json_t *rb_redact_json_shared(const struct rb_redactor *r, json_t *v);

/*
 * HMAC-SHA256 of msg under key, as 64 lower-case hex digits and a NUL: what
 * the audit log records to prove which secret was used without revealing
 * it.  0, or -1 when OpenSSL fails.
 */
int rb_hmac_hex(const void *key, size_t keylen, const void *msg, size_t len, char out[65]);

#endif
