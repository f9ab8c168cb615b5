/*
 * http.request: one HTTP request with libcurl, stepped in the engine's poll
 * loop (libcurl's multi socket interface: no thread per request, and name
 * lookups in libcurl's resolver thread, never the engine's).  Connections,
 * DNS answers and TLS sessions are kept for the run in a curl share
 * (runctx.h), so steps to the same host reuse them.
 *
 * What the request does decides its side effects: GET, HEAD and OPTIONS
 * read, the other methods write.  It is retried within the step on 429 and
 * 503 (the server did not take it), and on 502 and 504 too when it reads or
 * carries an Idempotency-Key, after Retry-After when the server gives one.
 * Failures to connect are the step's retry's business.
 *
 * Messages never hold a URL's user, password or query (docs/actions.md).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "action.h"
#include "http.h"
#include "runctx.h"
#include "types.h"
#include "util.h"

/* The body kept in the output; past it, the whole body goes to the run's files. */
#define HTTP_KEEP       (1024 * 1024)
/* The largest body taken when max_body is not given. */
#define HTTP_MAX_BODY   (64L * 1024 * 1024)
/*
 * Idle connections the run's share keeps.  Each step has a multi handle of
 * its own, and libcurl keeps at most a multi's CURLMOPT_MAXCONNECTS in the
 * shared cache when one is returned (4 a transfer unless set): with 50 steps
 * at once, 46 connections were closed after every wave and opened again by
 * the next.  As many as steps can run at once (--jobs at most 256).
 */
#define HTTP_MAX_IDLE   256L
/* The longest a Retry-After is waited for within a step. */
#define HTTP_MAX_WAIT_MS        60000

static const char *const methods[] = {
	"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", NULL,
};
static const char *const parses[] = {"auto", "json", "text", NULL};

static const struct rb_arg http_args[] = {
	{"url", RB_T_STRING, RB_ARG_REQUIRED, NULL, "http:// or https:// URL"},
	{"method", RB_T_STRING, 0, methods, "GET (the default), HEAD, OPTIONS, POST, PUT, "
	 "PATCH or DELETE"},
	{"query", RB_T_STRING_MAP, 0, NULL, "query parameters, added to the URL's, encoded"},
	{"headers", RB_T_STRING_MAP, 0, NULL, "request headers"},
	{"json", RB_T_ANY, 0, NULL, "a body sent as JSON (Content-Type: application/json)"},
	{"body", RB_T_STRING, 0, NULL, "a raw body (not with json)"},
	{"bearer_token", RB_T_STRING, RB_ARG_SECRET, NULL, "Authorization: Bearer, from secrets"},
	{"username", RB_T_STRING, 0, NULL, "user for basic auth (or the access key for aws_sigv4)"},
	{"password", RB_T_STRING, RB_ARG_SECRET, NULL, "password for basic auth (or the secret "
	 "key for aws_sigv4), from secrets"},
	{"aws_sigv4", RB_T_STRING, 0, NULL, "sign with AWS Signature V4: \"aws:amz:REGION:SERVICE\" "
	 "(S3-compatible storage), with username and password as the keys"},
	{"timeout", RB_T_DURATION, 0, NULL, "the whole request, retries included (the step's "
	 "timeout bounds it too)"},
	{"ca_file", RB_T_STRING, 0, NULL, "PEM file of the CAs to trust instead of the system's"},
	{"client_cert", RB_T_STRING, 0, NULL, "PEM file of a client certificate (mutual TLS)"},
	{"client_key", RB_T_STRING, 0, NULL, "PEM file of its private key"},
	{"insecure", RB_T_BOOLEAN, 0, NULL, "do not verify the server's certificate (the plan "
	 "says so)"},
	{"follow_redirects", RB_T_BOOLEAN, 0, NULL, "follow 3xx redirects (default false), at "
	 "most 10, never from https to http, nor to another host when headers hold a secret"},
	{"expect_status", RB_T_ANY, 0, NULL, "the statuses that succeed: a status, \"2xx\", a "
	 "range \"200-299\" or a list of those (default 2xx)"},
	{"retries", RB_T_INTEGER, 0, NULL, "how many times 429 and 5xx answers are retried within "
	 "the step (default 2)"},
	{"idempotency_key", RB_T_BOOLEAN, RB_ARG_MAKES_IDEMPOTENT, NULL, "send an Idempotency-Key "
	 "header that is the same for every retry and resume of the call"},
	{"parse", RB_T_STRING, 0, parses, "auto (JSON when the Content-Type says so), json or text"},
	{"max_body", RB_T_INTEGER, 0, NULL, "the largest body taken, in bytes (default 64 MiB)"},
	{NULL, 0, 0, NULL, NULL},
};

/* --- arguments ------------------------------------------------------------------------- */

static int method_reads(const char *m)
{
	return !m || !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS");
}

/* One item of expect_status: 200, "2xx", "200-299".  Its bounds in lo, hi; -1 when bad. */
static int status_range(const json_t *v, long *lo, long *hi)
{
	if (json_is_integer(v)) {
		*lo = *hi = (long)json_integer_value(v);
		return *lo >= 100 && *lo <= 599 ? 0 : -1;
	}
	const char *s = json_string_value(v);
	if (!s)
		return -1;
	if (strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' && s[1] == 'x' && s[2] == 'x') {
		*lo = (s[0] - '0') * 100;
		*hi = *lo + 99;
		return 0;
	}
	char *end;
	*lo = strtol(s, &end, 10);
	if (end == s)
		return -1;
	*hi = *lo;
	if (*end == '-') {
		const char *h = end + 1;
		*hi = strtol(h, &end, 10);
		if (end == h)
			return -1;
	}
	return *end || *lo < 100 || *hi > 599 || *lo > *hi ? -1 : 0;
}

static int status_expected(const json_t *expect, long status)
{
	long lo, hi;
	if (!expect)
		return status >= 200 && status <= 299;
	if (!json_is_array(expect))
		return status_range(expect, &lo, &hi) == 0 && status >= lo && status <= hi;
	size_t k;
	json_t *v;
	json_array_foreach(expect, k, v)
		if (status_range(v, &lo, &hi) == 0 && status >= lo && status <= hi)
			return 1;
	return 0;
}

/*
 * A URL for messages and the plan: scheme, host, port and path; never user, password,
 * query, nor, with secret (a webhook's URL is its key), the path.
 */
char *rb_http_url_shown(const char *url, int secret)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *shown = NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_PORT, &port, 0);
		curl_url_get(u, CURLUPART_PATH, &path, 0);
		shown = rb_xasprintf("%s://%s%s%s%s", scheme, host, port ? ":" : "",
				     port ? port : "", secret ? "/***" : path ? path : "");
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return shown ? shown : rb_xstrdup("(a URL that does not parse)");
}

/* 0 when url is an http or https URL with a host; else -1 with *why. */
static int check_url(const char *url, char **why)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
	int r = -1;
	if (rc != CURLUE_OK)
		*why = rb_xasprintf("not a URL (%s)", curl_url_strerror(rc));
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		 (strcmp(scheme, "http") && strcmp(scheme, "https")))
		*why = rb_xasprintf("the scheme must be http or https, not %s",
				    scheme ? scheme : "none");
	else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
		*why = rb_xstrdup("the URL has no host");
	else
		r = 0;
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return r;
}

/*
 * 0 when the headers and the token can go in a request as they are; else -1 with *arg
 * and *why.  A line break in a value would end the header and start one of the caller's
 * choosing (X-A: "v\r\nX-Injected: yes"), and a name that is not a token is no header.
 * Messages quote names, never values (a value may be a secret).
 */
static int headers_bad(const json_t *args, const char **arg, char **why)
{
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(args, "headers"), k, v) {
		*arg = "headers";
		if (!*k || k[strspn(k, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
				     "ABCDEFGHIJKLMNOPQRSTUVWXYZ")]) {
			char *vis = rb_visible(k, strlen(k), 0);
			*why = rb_xasprintf("'%s' is not a header name (letters, digits and "
					    "!#$%%&'*+-.^_`|~)", vis);
			free(vis);
			return -1;
		}
		const char *s = json_string_value(v);
		for (size_t i = 0; s && i < json_string_length(v); i++)
			if ((unsigned char)s[i] < 0x20 && s[i] != '\t') {
				*why = rb_xasprintf("the value of '%s' holds a control character "
						    "(a line break would start another header)", k);
				return -1;
			}
	}
	const char *token = rb_arg_str(args, "bearer_token");
	for (const char *p = token; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*arg = "bearer_token";
			*why = rb_xstrdup("holds a control character (a line break would start "
					  "another header)");
			return -1;
		}
	return 0;
}

static int http_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	const char *url = rb_arg_str(args, "url"), *arg;
	char *why = NULL;
	if (url && check_url(url, &why) < 0)
		return rb_arg_fail(e, "url", -1, why);
	if (headers_bad(args, &arg, &why) < 0)
		return rb_arg_fail(e, arg, -1, why);
	if (rb_arg_given(args, later, "json") && rb_arg_given(args, later, "body"))
		return rb_arg_fail(e, "body", -1, rb_xstrdup("give json or body, not both"));
	const char *m = rb_arg_str(args, "method");
	if (m && (!strcmp(m, "GET") || !strcmp(m, "HEAD")) &&
	    (rb_arg_given(args, later, "json") || rb_arg_given(args, later, "body")))
		return rb_arg_fail(e, "method", -1, rb_xasprintf("a %s request has no body", m));
	json_t *x = json_object_get(args, "expect_status");
	if (x) {
		long lo, hi;
		if (json_is_array(x)) {
			size_t k;
			json_t *v;
			if (!json_array_size(x))
				return rb_arg_fail(e, "expect_status", -1,
						 rb_xstrdup("an empty list: no status would succeed"));
			json_array_foreach(x, k, v)
				if (status_range(v, &lo, &hi) < 0)
					return rb_arg_fail(e, "expect_status", (int)k, rb_xstrdup(
						"expected a status (100-599), \"2xx\" or a range "
						"\"200-299\""));
		} else if (status_range(x, &lo, &hi) < 0) {
			return rb_arg_fail(e, "expect_status", -1, rb_xstrdup(
				"expected a status (100-599), \"2xx\", a range \"200-299\" or a list"));
		}
	}
	json_t *r = json_object_get(args, "retries");
	if (r && (!json_is_integer(r) || json_integer_value(r) < 0 || json_integer_value(r) > 10))
		return rb_arg_fail(e, "retries", -1, rb_xstrdup("expected 0 to 10"));
	json_t *mb = json_object_get(args, "max_body");
	if (mb && (!json_is_integer(mb) || json_integer_value(mb) < 0))
		return rb_arg_fail(e, "max_body", -1, rb_xstrdup("expected a number of bytes"));
	const char *sig = rb_arg_str(args, "aws_sigv4");
	if (sig && strncmp(sig, "aws:amz:", 8) && strncmp(sig, "osc:osc:", 8))
		return rb_arg_fail(e, "aws_sigv4", -1, rb_xstrdup(
			"expected \"aws:amz:REGION:SERVICE\" (for example aws:amz:us-east-1:s3)"));
	if (sig && !rb_arg_given(args, later, "username"))
		return rb_arg_fail(e, "aws_sigv4", -1, rb_xstrdup(
			"needs username (the access key) and password (the secret key)"));
	if (rb_arg_given(args, later, "client_key") && !rb_arg_given(args, later, "client_cert"))
		return rb_arg_fail(e, "client_key", -1, rb_xstrdup("goes with client_cert"));
	return 0;
}

static enum rb_effect http_effect(const json_t *args, const json_t *later, char **what)
{
	const char *m = rb_arg_str(args, "method"), *url = rb_arg_str(args, "url");
	size_t k;
	json_t *v;
	json_array_foreach(later, k, v)         /* a method computed at run time: cannot tell */
		if (!strcmp(json_string_value(v), "method"))
			return RB_EFFECT_UNKNOWN;
	char *shown = url ? rb_http_url_shown(url, 0) : NULL;
	*what = rb_xasprintf("%s %s%s", m ? m : "GET", shown ? shown : "(a URL known at run time)",
			     json_is_true(json_object_get(args, "insecure"))
			     ? " (insecure: the certificate is not verified)" : "");
	free(shown);
	return method_reads(m) ? RB_EFFECT_READS : RB_EFFECT_WRITES;
}

/* --- the run's share ------------------------------------------------------------------- */

struct share {
	CURLSH *sh;
	pthread_mutex_t mu[CURL_LOCK_DATA_LAST];
};

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access acc, void *ud)
{
	(void)h;
	(void)acc;
	pthread_mutex_lock(&((struct share *)ud)->mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	(void)h;
	pthread_mutex_unlock(&((struct share *)ud)->mu[data]);
}

static void global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void *share_make(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, global_init);
	struct share *s = rb_xcalloc(1, sizeof(*s));
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s->mu[i], NULL);
	s->sh = curl_share_init();
	curl_share_setopt(s->sh, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(s->sh, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(s->sh, CURLSHOPT_USERDATA, s);
	curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	return s;
}

static void share_free(void *p)
{
	struct share *s = p;
	curl_share_cleanup(s->sh);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&s->mu[i]);
	free(s);
}

/* --- a request under way --------------------------------------------------------------- */

struct sock {
	curl_socket_t fd;
	int what;                       /* CURL_POLL_IN, _OUT, _INOUT */
};

struct http {
	const struct rb_call *c;
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;
	char *body;                     /* what is sent */
	char *url;                      /* with the query added */
	char *shown;                    /* rb_http_url_shown */
	const char *method;
	char errbuf[CURL_ERROR_SIZE];
	struct sock socks[RB_ACTION_MAX_FDS];
	int nsocks;
	long timer_ms;                  /* libcurl's timeout, -1: none */
	int64_t deadline_ms;            /* the call's, or 0 */
	int64_t retry_at;               /* waiting to send again, or 0 */
	int attempts, retries, retry_5xx;
	/* The answer. */
	struct rb_buf resp;             /* the body kept */
	size_t body_len;                /* its length in all */
	long max_body;
	int too_big;
	int keep_home;                  /* custom headers hold a secret: follow no redirect to
					   another origin, where libcurl would send them too */
	int left_home;                  /* ... and an answer redirected there: stopped */
	int spill_fd;                   /* the body past HTTP_KEEP, or -1 */
	char *spill_file;
	struct rb_buf pend;             /* what waits for a cut before it is written */
	int spill_errno;
	json_t *resp_headers;
	long retry_after_ms;            /* the last answer's Retry-After, or -1 */
	json_t *cert;                   /* the peer certificate's facts, or NULL */
	enum rb_cancel_level stopping;
};

static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp)
{
	(void)e;
	(void)sockp;
	struct http *h = ud;
	int k;
	for (k = 0; k < h->nsocks && h->socks[k].fd != fd; k++)
		;
	if (what == CURL_POLL_REMOVE) {
		if (k < h->nsocks)
			h->socks[k] = h->socks[--h->nsocks];
		return 0;
	}
	if (k == h->nsocks) {
		if (h->nsocks == RB_ACTION_MAX_FDS)
			return -1;      /* libcurl fails the transfer */
		h->nsocks++;
	}
	h->socks[k] = (struct sock){fd, what};
	return 0;
}

static int on_timer(CURLM *m, long ms, void *ud)
{
	(void)m;
	((struct http *)ud)->timer_ms = ms;
	return 0;
}

/* The body past HTTP_KEEP goes to the run's file, through the engine's filter (redaction). */
static void spill_flush(struct http *h, int final)
{
	const struct rb_call *c = h->c;
	if (h->spill_fd < 0 || !h->pend.len)
		return;
	size_t n = final || !c->cut ? h->pend.len : c->cut(c->ud, h->pend.s, h->pend.len);
	if (!n)
		return;
	size_t outn = n;
	char *out = c->filter ? c->filter(c->ud, h->pend.s, n, &outn) : NULL;
	const char *p = out ? out : h->pend.s;
	for (size_t off = 0; off < outn && !h->spill_errno;) {
		ssize_t w = write(h->spill_fd, p + off, outn - off);
		if (w < 0 && errno != EINTR)
			h->spill_errno = errno;
		else if (w > 0)
			off += (size_t)w;
	}
	free(out);
	memmove(h->pend.s, h->pend.s + n, h->pend.len - n);
	h->pend.len -= n;
}

static size_t on_body(char *d, size_t size, size_t nmemb, void *ud)
{
	struct http *h = ud;
	size_t n = size * nmemb;
	if (h->body_len + n > (size_t)h->max_body) {
		h->too_big = 1;
		return 0;       /* libcurl stops: CURLE_WRITE_ERROR */
	}
	h->body_len += n;
	if (h->spill_fd < 0 && h->resp.len + n <= HTTP_KEEP) {
		rb_buf_add(&h->resp, d, n);
		return n;
	}
	if (h->spill_fd < 0 && h->c->spill_path && !h->spill_errno) {
		h->spill_file = rb_xasprintf("%s.body", h->c->spill_path);
		h->spill_fd = open(h->spill_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (h->spill_fd < 0)
			h->spill_errno = errno;
		else            /* the file has the whole body */
			rb_buf_add(&h->pend, h->resp.s, h->resp.len);
	}
	if (h->spill_fd >= 0) {
		rb_buf_add(&h->pend, d, n);
		spill_flush(h, 0);
	}
	return n;
}

/* The peer's certificate, while the connection is there: its expiry. */
static void take_cert(struct http *h)
{
	const struct curl_tlssessioninfo *ti = NULL;
	if (h->cert || curl_easy_getinfo(h->easy, CURLINFO_TLS_SSL_PTR, &ti) != CURLE_OK || !ti ||
	    ti->backend != CURLSSLBACKEND_OPENSSL || !ti->internals)
		return;
	X509 *x = SSL_get1_peer_certificate(ti->internals);
	if (!x)
		return;
	struct tm tm;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
		char iso[32];
		strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
		time_t t = timegm(&tm), now = time(NULL);
		double days = (double)(t - now) / 86400.0;
		h->cert = json_pack("{s:s, s:I}", "not_after", iso, "days_left",
				    (json_int_t)(days < 0 ? days - 1 : days));
	}
	X509_free(x);
}

/* Retry-After: seconds, or an HTTP date. */
static long retry_after(const char *v)
{
	char *end;
	long s = strtol(v, &end, 10);
	if (end != v && !*end && s >= 0)
		return s > HTTP_MAX_WAIT_MS / 1000 ? HTTP_MAX_WAIT_MS : s * 1000;
	time_t t = curl_getdate(v, NULL);
	if (t < 0)
		return -1;
	double ms = difftime(t, time(NULL)) * 1000.0;
	return ms < 0 ? 0 : ms > HTTP_MAX_WAIT_MS ? HTTP_MAX_WAIT_MS : (long)ms;
}

/* Scheme, host and port of url, resolved against base: "https://api.example.com:443". */
static char *origin(const char *base, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *o = NULL;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		o = rb_xasprintf("%s://%s:%s", scheme, host, port);
		for (char *p = o; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return o;
}

/*
 * A redirect's Location, when the request's own headers hold a secret: libcurl keeps
 * only Authorization and Cookie from another host, and would send the rest (X-Api-Key)
 * wherever the answer points.  0 stops the transfer before it follows.
 */
static int may_follow(struct http *h, const char *location)
{
	long status = 0;
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
	if (!h->keep_home || status < 300 || status > 399)
		return 1;
	char *eff = NULL;
	curl_easy_getinfo(h->easy, CURLINFO_EFFECTIVE_URL, &eff);
	char *from = eff ? origin(eff, eff) : NULL, *to = eff ? origin(eff, location) : NULL;
	int same = from && to && !strcmp(from, to);
	free(from);
	free(to);
	if (!same)
		h->left_home = 1;
	return same;
}

static size_t on_header(char *d, size_t size, size_t nmemb, void *ud)
{
	struct http *h = ud;
	size_t n = size * nmemb;
	take_cert(h);
	if (n >= 5 && !memcmp(d, "HTTP/", 5)) {         /* a new answer (a redirect's, a 100) */
		json_object_clear(h->resp_headers);
		h->retry_after_ms = -1;
		return n;
	}
	const char *colon = memchr(d, ':', n);
	if (!colon)
		return n;
	char *name = rb_xstrndup(d, (size_t)(colon - d));
	for (char *p = name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	const char *v = colon + 1, *e = d + n;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
		e--;
	size_t clean_n;
	char *value = rb_utf8_lossy(v, (size_t)(e - v), &clean_n);
	json_t *was = json_object_get(h->resp_headers, name);
	if (was) {              /* a repeated header, as one: "a, b" */
		char *both = rb_xasprintf("%s, %s", json_string_value(was), value);
		json_object_set_new(h->resp_headers, name, json_string(both));
		free(both);
	} else {
		json_object_set_new(h->resp_headers, name, json_stringn(value, clean_n));
	}
	if (!strcmp(name, "retry-after"))
		h->retry_after_ms = retry_after(value);
	int stop = !strcmp(name, "location") && !may_follow(h, value);
	free(name);
	free(value);
	return stop ? 0 : n;
}

static void free_http(struct http *h)
{
	if (h->multi && h->easy)
		curl_multi_remove_handle(h->multi, h->easy);
	curl_easy_cleanup(h->easy);
	curl_multi_cleanup(h->multi);
	curl_slist_free_all(h->headers);
	free(h->body);
	free(h->url);
	free(h->shown);
	rb_buf_release(&h->resp);
	rb_buf_release(&h->pend);
	if (h->spill_fd >= 0)
		close(h->spill_fd);
	free(h->spill_file);
	json_decref(h->resp_headers);
	json_decref(h->cert);
	free(h);
}

static void add_header(struct http *h, const char *name, const char *value)
{
	/* "Name:" would tell libcurl to leave the header out; "Name;" sends it empty. */
	char *line = *value ? rb_xasprintf("%s: %s", name, value) : rb_xasprintf("%s;", name);
	h->headers = curl_slist_append(h->headers, line);
	free(line);
}

/* The URL with the query's parameters added, encoded; NULL with *err. */
static char *build_url(const json_t *args, char **err)
{
	CURLU *u = curl_url();
	char *out = NULL;
	if (curl_url_set(u, CURLUPART_URL, rb_arg_str(args, "url"), 0) != CURLUE_OK) {
		*err = rb_xstrdup("url: not a URL");
		curl_url_cleanup(u);
		return NULL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(args, "query"), k, v) {
		char *pair = rb_xasprintf("%s=%s", k, json_string_value(v));
		curl_url_set(u, CURLUPART_QUERY, pair, CURLU_APPENDQUERY | CURLU_URLENCODE);
		free(pair);
	}
	char *s = NULL;
	if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = rb_xstrdup(s);
	else
		*err = rb_xstrdup("url: cannot be built with the query");
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

/* Set up the easy handle for the request. */
static void set_up(struct http *h)
{
	const json_t *a = h->c->args;
	CURL *e = h->easy;
	void *share = rb_runctx_object(h->c->run, "curl-share", share_make, share_free);
	if (share)
		curl_easy_setopt(e, CURLOPT_SHARE, ((struct share *)share)->sh);
	curl_easy_setopt(e, CURLOPT_URL, h->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "runbook");
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
	if (json_is_true(json_object_get(a, "follow_redirects"))) {
		h->keep_home = rb_call_arg_secret(h->c, "headers");
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
		/* Redirects keep http only when the request was http. */
		if (!strncmp(h->url, "http:", 5))
			curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	}
	if (!strcmp(h->method, "HEAD"))
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(h->method, "GET"))
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, h->method);
	json_t *js = json_object_get(a, "json");
	const char *raw = rb_arg_str(a, "body");
	if (js) {
		h->body = json_dumps(js, JSON_COMPACT | JSON_ENCODE_ANY);
		add_header(h, "Content-Type", "application/json");
	} else if (raw) {
		h->body = rb_xstrdup(raw);
	}
	if (h->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, h->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(h->body));
	} else if (strcmp(h->method, "GET") && strcmp(h->method, "HEAD") &&
		   strcmp(h->method, "OPTIONS")) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	if (json_is_true(json_object_get(a, "idempotency_key"))) {
		char key[33];
		rb_call_key(h->c, key);
		add_header(h, "Idempotency-Key", key);
	}
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(a, "headers"), k, v)
		add_header(h, k, json_string_value(v));
	const char *token = rb_arg_str(a, "bearer_token");
	if (token) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, token);
	}
	const char *user = rb_arg_str(a, "username"), *pass = rb_arg_str(a, "password");
	if (user) {
		curl_easy_setopt(e, CURLOPT_USERNAME, user);
		curl_easy_setopt(e, CURLOPT_PASSWORD, pass ? pass : "");
		if (!rb_arg_str(a, "aws_sigv4"))
			curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
	}
	if (rb_arg_str(a, "aws_sigv4")) {
		curl_easy_setopt(e, CURLOPT_AWS_SIGV4, rb_arg_str(a, "aws_sigv4"));
		/* S3 wants the body's hash in a header, which libcurl then signs with the rest. */
		char hex[65];
		rb_sha256_hex(h->body ? h->body : "", h->body ? strlen(h->body) : 0, hex);
		add_header(h, "x-amz-content-sha256", hex);
	}
	if (h->headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
	if (rb_arg_str(a, "ca_file"))
		curl_easy_setopt(e, CURLOPT_CAINFO, rb_arg_str(a, "ca_file"));
	if (rb_arg_str(a, "client_cert"))
		curl_easy_setopt(e, CURLOPT_SSLCERT, rb_arg_str(a, "client_cert"));
	if (rb_arg_str(a, "client_key"))
		curl_easy_setopt(e, CURLOPT_SSLKEY, rb_arg_str(a, "client_key"));
	if (json_is_true(json_object_get(a, "insecure"))) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

/* (Re)start the transfer: a fresh answer. */
static int send_request(struct http *h, char **err)
{
	if (h->easy) {
		curl_multi_remove_handle(h->multi, h->easy);
		curl_easy_reset(h->easy);
		curl_slist_free_all(h->headers);
		h->headers = NULL;
		free(h->body);
		h->body = NULL;
	} else if (!(h->easy = curl_easy_init())) {
		*err = rb_xstrdup("cannot start a request (libcurl)");
		return -1;
	}
	h->attempts++;
	h->resp.len = 0;
	h->pend.len = 0;
	h->body_len = 0;
	h->too_big = 0;
	h->left_home = 0;
	h->errbuf[0] = '\0';
	h->retry_after_ms = -1;
	json_object_clear(h->resp_headers);
	json_decref(h->cert);
	h->cert = NULL;
	if (h->spill_fd >= 0) {
		close(h->spill_fd);
		h->spill_fd = -1;
	}
	set_up(h);
	if (h->deadline_ms) {
		long left = (long)(h->deadline_ms - rb_now_ms());
		curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, left < 1 ? 1L : left);
	}
	if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK) {
		*err = rb_xstrdup("cannot start a request (libcurl)");
		return -1;
	}
	return 0;
}

static void *http_start(const struct rb_call *c, struct rb_result *res)
{
	struct http *h = rb_xcalloc(1, sizeof(*h));
	h->c = c;
	h->spill_fd = -1;
	h->timer_ms = -1;
	h->resp_headers = json_object();
	rb_buf_init(&h->resp);
	rb_buf_init(&h->pend);
	const json_t *a = c->args;
	h->method = rb_arg_str(a, "method") ? rb_arg_str(a, "method") : "GET";
	h->shown = rb_http_url_shown(rb_arg_str(a, "url"), rb_call_arg_secret(c, "url"));
	json_t *r = json_object_get(a, "retries");
	h->retries = r ? (int)json_integer_value(r) : 2;
	h->retry_5xx = method_reads(h->method) || json_is_true(json_object_get(a, "idempotency_key"));
	json_t *mb = json_object_get(a, "max_body");
	h->max_body = mb ? (long)json_integer_value(mb) : HTTP_MAX_BODY;
	h->deadline_ms = c->deadline_ms;
	const char *t = rb_arg_str(a, "timeout");
	int64_t ms;
	const char *why;
	if (t && rb_duration_parse(t, &ms, &why) == 0 && ms > 0 &&
	    (!h->deadline_ms || rb_now_ms() + ms < h->deadline_ms))
		h->deadline_ms = rb_now_ms() + ms;
	char *err = NULL;
	const char *arg;
	if (headers_bad(a, &arg, &err) < 0) {   /* notify.*'s too, which check() never saw */
		char *bad = err;
		err = rb_xasprintf("%s: %s", arg, bad);
		free(bad);
	}
	if (err || !(h->url = build_url(a, &err)) || !(h->multi = curl_multi_init())) {
		res->outcome = RB_BROKEN;
		res->error = err ? err : rb_xstrdup("cannot start a request (libcurl)");
		free_http(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, HTTP_MAX_IDLE);
	if (send_request(h, &err) < 0) {
		res->outcome = RB_BROKEN;
		res->error = err;
		free_http(h);
		return NULL;
	}
	return h;
}

static json_int_t info_us(CURL *e, CURLINFO what)
{
	curl_off_t us = 0;
	curl_easy_getinfo(e, what, &us);
	return (json_int_t)us;
}

/* The answer as the step's output. */
static json_t *answer(struct http *h, long status, struct rb_result *res)
{
	json_t *out = json_object();
	json_object_set_new(out, "status", json_integer(status));
	json_object_set(out, "headers", h->resp_headers);
	/* Spilled, the output keeps what comes before a cut that splits no secret. */
	size_t keep = h->resp.len;
	if (h->body_len > h->resp.len && h->c->cut)
		keep = h->c->cut(h->c->ud, h->resp.s, h->resp.len);
	size_t n;
	char *text = rb_utf8_lossy(h->resp.s ? h->resp.s : "", keep, &n);
	json_object_set_new(out, "body", json_stringn(text, n));
	free(text);
	json_object_set_new(out, "body_bytes", json_integer((json_int_t)h->body_len));
	if (h->spill_file && !h->spill_errno) {
		spill_flush(h, 1);
		json_object_set_new(out, "body_file", json_string(h->spill_file));
	} else if (h->body_len > h->resp.len) {
		res->warning = rb_xasprintf("the body was %zu bytes: the first %zu are in the "
					    "output, the rest is lost (%s)", h->body_len, h->resp.len,
					    h->spill_errno ? strerror(h->spill_errno)
					    : "no run directory");
	}
	const char *parse = rb_arg_str(h->c->args, "parse");
	const char *ct = json_string_value(json_object_get(h->resp_headers, "content-type"));
	int want = parse && !strcmp(parse, "json");
	int may = (!parse || !strcmp(parse, "auto")) && ct && strstr(ct, "json");
	if ((want || may) && h->body_len == h->resp.len && h->resp.len) {
		json_error_t e;
		json_t *j = json_loadb(h->resp.s, h->resp.len, JSON_DECODE_ANY, &e);
		if (j)
			json_object_set_new(out, "json", j);
		else if (!res->error)
			res->error = rb_xasprintf("%s %s: the body is not valid JSON (line %d, "
						  "column %d: %s)", h->method, h->shown, e.line,
						  e.column, rb_json_why(&e));
	} else if (want && !res->error) {
		res->error = rb_xasprintf("%s %s: the body is %s, not JSON", h->method, h->shown,
					  h->resp.len ? "too long to decode" : "empty");
	}
	char *eff = NULL;
	curl_easy_getinfo(h->easy, CURLINFO_EFFECTIVE_URL, &eff);
	if (eff) {
		char *shown = rb_http_url_shown(eff, rb_call_arg_secret(h->c, "url"));
		json_object_set_new(out, "url", json_string(shown));
		free(shown);
	}
	/* Microseconds from the start of the last attempt. */
	json_object_set_new(out, "timings", json_pack(
		"{s:I, s:I, s:I, s:I, s:I}",
		"dns_us", info_us(h->easy, CURLINFO_NAMELOOKUP_TIME_T),
		"connect_us", info_us(h->easy, CURLINFO_CONNECT_TIME_T),
		"tls_us", info_us(h->easy, CURLINFO_APPCONNECT_TIME_T),
		"first_byte_us", info_us(h->easy, CURLINFO_STARTTRANSFER_TIME_T),
		"total_us", info_us(h->easy, CURLINFO_TOTAL_TIME_T)));
	if (h->cert)
		json_object_set(out, "certificate", h->cert);
	json_object_set_new(out, "attempts", json_integer(h->attempts));
	long fresh = 0;
	curl_easy_getinfo(h->easy, CURLINFO_NUM_CONNECTS, &fresh);
	json_object_set_new(out, "reused_connection", json_boolean(fresh == 0));
	return out;
}

/* Whether an answer of this status is sent again, and when. */
static int retry_later(struct http *h, long status)
{
	if (h->attempts > h->retries)
		return 0;
	if (!(status == 429 || status == 503 || (h->retry_5xx && (status == 502 || status == 504))))
		return 0;
	long wait = h->retry_after_ms >= 0 ? h->retry_after_ms
		    : 1000L << (h->attempts - 1 < 5 ? h->attempts - 1 : 5);
	int64_t at = rb_now_ms() + wait;
	if (h->deadline_ms && at >= h->deadline_ms)
		return 0;       /* the answer stands: waiting would pass the deadline */
	h->retry_at = at;
	return 1;
}

/* The transfer ended with code: 1 when the call is over (res filled in), 0 when it goes on. */
static int transfer_done(struct http *h, CURLcode code, struct rb_result *res)
{
	long status = 0;
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
	if (code == CURLE_OK && retry_later(h, status))
		return 0;
	if (code != CURLE_OK) {
		int timeout = code == CURLE_OPERATION_TIMEDOUT;
		res->outcome = timeout && h->deadline_ms && rb_now_ms() >= h->deadline_ms - 5
			       ? RB_TIMED_OUT : RB_FAILED;
		if (h->too_big)
			res->error = rb_xasprintf("%s %s: the body is larger than %ld bytes "
						  "(max_body)", h->method, h->shown, h->max_body);
		else if (h->left_home)
			res->error = rb_xasprintf("%s %s: status %ld redirects to another host, "
						  "and headers holds a secret: not followed",
						  h->method, h->shown, status);
		else
			res->error = rb_xasprintf("%s %s: %s", h->method, h->shown,
						  h->errbuf[0] && !strstr(h->errbuf, "://")
						  ? h->errbuf : curl_easy_strerror(code));
		if (status)
			res->output = answer(h, status, res);
		return 1;
	}
	res->output = answer(h, status, res);
	if (!status_expected(json_object_get(h->c->args, "expect_status"), status)) {
		res->outcome = RB_FAILED;
		free(res->error);
		char tries[48] = "";
		if (h->attempts > 1)
			snprintf(tries, sizeof(tries), " (after %d attempts)", h->attempts);
		res->error = rb_xasprintf("%s %s: status %ld%s", h->method, h->shown, status, tries);
	} else if (res->error) {
		res->outcome = RB_FAILED;
	}
	return 1;
}

static int http_step(void *state, struct pollfd *fds, int *nfds, long *timeout_ms,
		     struct rb_result *res)
{
	struct http *h = state;
	const struct rb_call *c = h->c;
	int running = 1;
	enum rb_cancel_level cancel = rb_cancelled(c->cancel);
	if (cancel) {
		res->outcome = RB_CANCELLED;
		res->error = rb_xasprintf("%s %s: cancelled", h->method, h->shown);
		free_http(h);
		return 1;
	}
	if (h->retry_at) {
		if (rb_now_ms() < h->retry_at) {
			*nfds = 0;
			*timeout_ms = (long)(h->retry_at - rb_now_ms());
			return 0;
		}
		h->retry_at = 0;
		char *err = NULL;
		if (send_request(h, &err) < 0) {
			res->outcome = RB_BROKEN;
			res->error = err;
			free_http(h);
			return 1;
		}
		*nfds = 0;
	}
	int acted = 0;
	for (int k = 0; k < *nfds; k++) {
		if (!fds[k].revents)
			continue;
		int ev = (fds[k].revents & (POLLIN | POLLHUP) ? CURL_CSELECT_IN : 0) |
			 (fds[k].revents & POLLOUT ? CURL_CSELECT_OUT : 0) |
			 (fds[k].revents & (POLLERR | POLLNVAL) ? CURL_CSELECT_ERR : 0);
		curl_multi_socket_action(h->multi, fds[k].fd, ev, &running);
		acted = 1;
	}
	if (!acted)     /* the first step, or a timer */
		curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(h->multi, &left)))
		if (m->msg == CURLMSG_DONE) {
			if (!transfer_done(h, m->data.result, res)) {
				*nfds = 0;
				*timeout_ms = (long)(h->retry_at - rb_now_ms());
				return 0;
			}
			free_http(h);
			return 1;
		}
	*nfds = 0;
	for (int k = 0; k < h->nsocks; k++) {
		fds[k].fd = h->socks[k].fd;
		fds[k].events = (short)((h->socks[k].what & CURL_POLL_IN ? POLLIN : 0) |
					(h->socks[k].what & CURL_POLL_OUT ? POLLOUT : 0));
		fds[k].revents = 0;
		(*nfds)++;
	}
	*timeout_ms = h->timer_ms;
	return 0;
}

static const struct rb_output http_outputs[] = {
	{"status", "the status of the last answer (after retries and redirects)"},
	{"headers", "its headers, names in lower case; a repeated header's values joined "
	 "with \", \""},
	{"body", "the body as text (bytes that are not UTF-8 become U+FFFD); past 1 MiB, its "
	 "start, the whole in body_file"},
	{"body_bytes", "the body's length in bytes"},
	{"body_file", "past 1 MiB: the file in the run's output directory with the whole body"},
	{"json", "the body decoded, when parse is json, or auto and the Content-Type says JSON "
	 "(a body that does not decode fails the step)"},
	{"url", "the last URL, after redirects, without user, password or query"},
	{"timings", "microseconds from the start of the last attempt: dns_us, connect_us, "
	 "tls_us, first_byte_us, total_us"},
	{"certificate", "https: the server certificate's not_after (ISO 8601) and days_left"},
	{"attempts", "how many times it was sent (retries on 429 and 5xx)"},
	{"reused_connection", "whether the request went on a connection an earlier one of the "
	 "run opened (they are kept for the run)"},
	{NULL, NULL},
};

const struct rb_action act_http_request = {
	.name = "http.request",
	.summary = "send an HTTP request; its status, headers and body (decoded when JSON) "
		   "are the output",
	.args = http_args,
	.outputs = http_outputs,
	.effects = "GET, HEAD and OPTIONS have none (`--dry-run --probe` sends them, and a "
		   "`check:` may use them); POST, PUT, PATCH and DELETE have, and so has a method "
		   "known only at run time",
	.example = "- id: api_health\n"
		   "  action: http.request\n"
		   "  with:\n"
		   "    url: https://api.example.com/health\n"
		   "    timeout: 10s\n"
		   "    expect_status: [200, 204]\n"
		   "- id: open_incident\n"
		   "  action: http.request\n"
		   "  with:\n"
		   "    method: POST\n"
		   "    url: https://status.example.com/v1/incidents\n"
		   "    bearer_token: ${{ secrets.status_token }}\n"
		   "    json: {title: \"API down\", severity: P1}\n"
		   "    idempotency_key: true\n",
	.flags = RB_ACT_SIDE_EFFECTS,
	.check = http_check,
	.effect = http_effect,
	.start = http_start,
	.step = http_step,
};
