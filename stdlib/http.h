/*
 * What http.request shares with the actions built on it (notify.*).
 */
#ifndef RB_HTTP_H
#define RB_HTTP_H

/*
 * A URL for messages and the plan: scheme, host, port and path; never user,
 * password, query, nor, with secret (a webhook's URL is its key), the path.
 */
char *rb_http_url_shown(const char *url, int secret);

#endif
