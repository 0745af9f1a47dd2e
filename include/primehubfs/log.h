/*
 * log.h - the daemon's log: stderr while in the foreground (-f/-d), syslog
 * once daemonized.  Thread-safe; one line per call.
 */
#ifndef PRIMEHUBFS_LOG_H
#define PRIMEHUBFS_LOG_H

#include <stdbool.h>
#include "primehubfs/error.h"

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Called once by main before the FUSE loop starts.  debug enables DEBUG
 * lines; use_syslog switches from stderr to syslog(3). */
void log_setup(bool debug, bool use_syslog);

void log_msg(enum log_level level, const char *fmt, ...) PH_PRINTF(2, 3);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
