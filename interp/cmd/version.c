/*
 * runbook --version: the version, and the versions of the seven libraries
 * the binary is linked with (what a bug report needs).
 */
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <yaml.h>

#include "cli.h"

void rb_print_version(FILE *f)
{
	int pq = PQlibVersion();
	fprintf(f, "runbook %s\n", rb_version);
	fprintf(f, "libraries: libyaml %s, %s, libcurl %s, %s, jansson %s, libpq %d.%d, "
		"hiredis %d.%d.%d\n", yaml_get_version_string(), LUA_RELEASE,
		curl_version_info(CURLVERSION_NOW)->version, OpenSSL_version(OPENSSL_VERSION),
		jansson_version_str(), pq / 10000, pq % 10000, HIREDIS_MAJOR, HIREDIS_MINOR,
		HIREDIS_PATCH);
}
