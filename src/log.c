/* log.c - see primehubfs/log.h.  stderr in the foreground, syslog once
 * daemonized (stderr is /dev/null then).
 *
 * Every line passes through ph_escape_line: image and group names come from
 * the server and from users, and a name with a newline, an ANSI escape or a
 * right-to-left override must not forge, colour or reorder a log line. */
#include "primehubfs/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

static struct {
	bool debug;
	bool use_syslog;
} log_cfg;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_setup(bool debug, bool use_syslog)
{
	log_cfg.debug = debug;
	log_cfg.use_syslog = use_syslog;
	if (use_syslog)
		openlog("primehubfs", LOG_PID, LOG_DAEMON);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char line[1024];
	char safe[4 * sizeof(line)]; /* an escape is at most 4 bytes for 1 */
	va_list ap;

	if (level == LOG_LVL_DEBUG && !log_cfg.debug)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	ph_escape_line(line, safe, sizeof(safe));

	if (log_cfg.use_syslog) {
		syslog(prio[level], "%s", safe);
		return;
	}
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "primehubfs: %s: %s\n", names[level], safe);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}
