/*
 * log.h - the daemon's log: stderr, syslog or a file (-o log=), at a level
 * (-o log_level=).  Default: stderr in the foreground (-f/-d), syslog once
 * daemonized.  Thread-safe; one line per call, escaped (ph_escape_line).
 */
#ifndef PRIMEHUBFS_LOG_H
#define PRIMEHUBFS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include "primehubfs/error.h"

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* "error", "warn", "info" or "debug": 0, else -EINVAL. */
int log_parse_level(const char *name, enum log_level *out);

/*
 * Called once by main before daemonizing.  dest is "stderr", "syslog" or the
 * path of a file (appended to, created 0600; a relative path is taken from
 * the current directory now, as daemonizing changes it); NULL means stderr
 * when foreground, syslog otherwise.  Lines above level are dropped.
 * -errno (reason in err) when the file cannot be opened.  When syslog is
 * chosen but /dev/log does not answer, says so once on stderr and logs to
 * stderr instead (nothing, once daemonized: stderr is /dev/null then).
 */
int log_open(const char *dest, enum log_level level, bool foreground, struct ph_err *err);

/* The old interface (unit tests): stderr or syslog, info or debug. */
void log_setup(bool debug, bool use_syslog);

/* Async-signal-safe (SIGHUP): the log file is opened again, by name, before
 * the next line is written, so logrotate can move it away. */
void log_request_reopen(void);

bool log_enabled(enum log_level level);

/* Where the log goes, for the mount message ("syslog", "stderr", a path). */
const char *log_destination(void);

void log_msg(enum log_level level, const char *fmt, ...) PH_PRINTF(2, 3);
void log_vmsg(enum log_level level, const char *fmt, va_list ap) PH_PRINTF(2, 0);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
