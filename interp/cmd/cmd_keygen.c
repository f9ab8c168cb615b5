/*
 * runbook keygen --out FILE [--force]: generate an Ed25519 key pair for
 * signing audit logs, FILE (private, 0600) and FILE.pub.  An existing key is
 * never replaced without --force: losing a key makes its logs unverifiable.
 */
#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "cli.h"

int cmd_keygen(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{'o', "out", 1}, {0, "force", 0}, {0, NULL, 0}};
	struct rb_optparse p;
	const char *out = NULL;
	int force = 0, k;
	rb_opt_init(&p, "keygen", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR)
			return RB_EXIT_INVALID;
		if (k == RB_OPT_HELP) {
			rb_print_usage("keygen", stdout);
			return RB_EXIT_OK;
		}
		if (k == RB_OPT_ARG)
			return rb_usage_error("keygen: unexpected argument '%s' (the file is given "
					      "with --out)", p.val);
		if (k == 0)
			out = p.val;
		else
			force = 1;
	}
	if (!out || !*out)
		return rb_usage_error("keygen: no file given (usage: runbook keygen --out FILE)");
	struct rb_audit_key *key;
	char *err = NULL;
	if (rb_audit_keygen(out, force, &key, &err) < 0) {
		fprintf(stderr, "runbook: error: %s%s\n", err,
			force ? "" : " (--force replaces it)");
		free(err);
		return RB_EXIT_FAILED;
	}
	printf("%s: Ed25519 private key %s (mode 0600)\n%s.pub: its public key, for keyrings\n",
	       out, rb_audit_key_id(key), out);
	rb_audit_key_free(key);
	return RB_EXIT_OK;
}
