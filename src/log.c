/* log.c - see primehubfs/log.h.
 *
 * Every line passes through ph_escape_line: image and group names come from
 * the server and from users, and a name with a newline, an ANSI escape or a
 * right-to-left override must not forge, colour or reorder a log line. */
#include "primehubfs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum log_target { TARGET_STDERR, TARGET_SYSLOG, TARGET_FILE };

static struct {
	enum log_level level;
	enum log_target target;
	int fd;              /* TARGET_FILE */
	char path[PATH_MAX]; /* TARGET_FILE: absolute */
} log_cfg = {.level = LOG_LVL_INFO, .fd = -1};
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t reopen_wanted;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

int log_parse_level(const char *name, enum log_level *out)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (int i = 0; i < 4; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool log_enabled(enum log_level level)
{
	return level <= log_cfg.level;
}

const char *log_destination(void)
{
	switch (log_cfg.target) {
	case TARGET_SYSLOG:
		return "syslog";
	case TARGET_FILE:
		return log_cfg.path;
	case TARGET_STDERR:
		break;
	}
	return "stderr";
}

void log_request_reopen(void)
{
	reopen_wanted = 1;
}

/* Does syslog's socket answer?  openlog(3) never says: without this, every
 * line of a daemon on a machine without a syslog daemon is silently lost. */
static int syslog_reachable(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int ret = 0;

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", "/dev/log");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		ret = -errno;
	close(fd);
	return ret;
}

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
}

int log_open(const char *dest, enum log_level level, bool foreground, struct ph_err *err)
{
	log_cfg.level = level;
	if (!dest)
		dest = foreground ? "stderr" : "syslog";
	if (strcmp(dest, "stderr") == 0) {
		log_cfg.target = TARGET_STDERR;
		return 0;
	}
	if (strcmp(dest, "syslog") == 0) {
		int ret = syslog_reachable();

		if (ret < 0) {
			fprintf(
			    stderr,
			    "primehubfs: warning: syslog is unreachable (/dev/log: %s); logging "
			    "to stderr%s (-o log=FILE keeps a log)\n",
			    strerror(-ret),
			    foreground ? "" : ", which is lost once in the background");
			log_cfg.target = TARGET_STDERR;
			return 0;
		}
		log_cfg.target = TARGET_SYSLOG;
		openlog("primehubfs", LOG_PID, LOG_DAEMON);
		return 0;
	}
	if (dest[0] == '/') {
		if (snprintf(log_cfg.path, sizeof(log_cfg.path), "%s", dest) >=
		    (int)sizeof(log_cfg.path))
			return ph_err_set(err, ENAMETOOLONG, NULL, "log file name too long");
	} else {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(log_cfg.path, sizeof(log_cfg.path), "%s/%s", cwd, dest) >=
		        (int)sizeof(log_cfg.path))
			return ph_err_set(err, ENAMETOOLONG, NULL, "log file name too long");
	}
	log_cfg.fd = open_file(log_cfg.path);
	if (log_cfg.fd < 0) {
		int e = errno;

		return ph_err_set(err, e, NULL, "cannot open log file %s: %s", log_cfg.path,
		                  strerror(e));
	}
	log_cfg.target = TARGET_FILE;
	return 0;
}

void log_setup(bool debug, bool use_syslog)
{
	log_cfg.level = debug ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	log_cfg.target = use_syslog ? TARGET_SYSLOG : TARGET_STDERR;
	if (use_syslog)
		openlog("primehubfs", LOG_PID, LOG_DAEMON);
}

/* Under log_lock.  A failure keeps the old descriptor (the lines go to the
 * moved file rather than nowhere) and says so in it. */
static void reopen_file(void)
{
	int fd = open_file(log_cfg.path);

	if (fd < 0) {
		dprintf(log_cfg.fd, "primehubfs: error: cannot reopen log file %s: %s\n",
		        log_cfg.path, strerror(errno));
		return;
	}
	close(log_cfg.fd);
	log_cfg.fd = fd;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char line[1024];
	char safe[4 * sizeof(line)]; /* an escape is at most 4 bytes for 1 */

	if (level > log_cfg.level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	ph_escape_line(line, safe, sizeof(safe));

	if (log_cfg.target == TARGET_SYSLOG) {
		syslog(prio[level], "%s", safe);
		return;
	}
	pthread_mutex_lock(&log_lock);
	if (log_cfg.target == TARGET_FILE) {
		struct timespec now;
		struct tm tm;
		char stamp[40], out[sizeof(safe) + 96];
		int n;

		if (reopen_wanted) {
			reopen_wanted = 0;
			reopen_file();
		}
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		/* One write per line: O_APPEND keeps lines whole. */
		n = snprintf(out, sizeof(out), "%s.%03ldZ primehubfs[%d]: %s: %s\n", stamp,
		             now.tv_nsec / 1000000, (int)getpid(), level_names[level], safe);
		if (n > (int)sizeof(out) - 1) {
			n = (int)sizeof(out) - 1;
			out[n - 1] = '\n';
		}
		if (n > 0 && write(log_cfg.fd, out, (size_t)n) < 0) {
			/* Nowhere left to say it. */
		}
	} else {
		fprintf(stderr, "primehubfs: %s: %s\n", level_names[level], safe);
		fflush(stderr);
	}
	pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
