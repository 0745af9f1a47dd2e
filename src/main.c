/*
 * main.c - command line, configuration, the mount-time check, and the FUSE
 * loop.  Shaped like sshfs's main: parse options with a fuse_opt table,
 * connect and check before daemonizing, then fuse_session_loop_mt.
 *
 *   primehubfs [ENDPOINT] MOUNTPOINT [-o opt,...] [-f] [-d] [-s]
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "primehubfs/config.h"
#include "primehubfs/fs.h"
#include <fuse_lowlevel.h>
#include "primehubfs/graphql.h"
#include "primehubfs/history.h"
#include "primehubfs/http.h"
#include "primehubfs/log.h"
#include "primehubfs/primehub.h"

struct options {
	char *config;
	char *token_file;
	char *cafile;
	int ttl;             /* seconds */
	int timeout;         /* seconds, whole request */
	int connect_timeout; /* seconds */
	int max_tree_mb;     /* the largest tree answer, MiB (0: default) */
	int poll_us;         /* how long the reader polls between requests; -1: default */
	int show_help;
	int show_version;
	int allow_other;   /* seen (and passed on to libfuse) */
	int nonempty;      /* consent to hide a non-empty mount point */
	int dry_run;       /* validate and plan every change, send none */
	char *history_dir; /* where versions of spec.json are kept */
	int history_keep;  /* versions per image; 0: none kept; -1: default */
	char *log;         /* stderr, syslog or a file */
	char *log_level;   /* error, warn, info, debug */
	/* -o uid=, gid=, umask=: libfuse's high-level options, which the
	 * low-level API leaves to the file system. */
	unsigned uid, gid, umask;
	int set_uid, set_gid, set_umask;
	char *nonopt[2]; /* ENDPOINT and MOUNTPOINT as given */
	int nnonopt;
};

#define OPTION(t, p)                                                                               \
	{                                                                                          \
		t, offsetof(struct options, p), 1                                                  \
	}
enum { KEY_ALLOW_OTHER };

static const struct fuse_opt option_spec[] = {
    OPTION("config=%s", config),
    OPTION("token_file=%s", token_file),
    OPTION("cafile=%s", cafile),
    OPTION("ttl=%d", ttl),
    OPTION("timeout=%d", timeout),
    OPTION("connect_timeout=%d", connect_timeout),
    OPTION("max_tree_mb=%d", max_tree_mb),
    OPTION("poll_us=%d", poll_us),
    /* libfuse 3 dropped nonempty (and mounts over anything); ours, consumed. */
    OPTION("nonempty", nonempty),
    OPTION("dry_run", dry_run),
    OPTION("history_dir=%s", history_dir),
    OPTION("history_keep=%d", history_keep),
    OPTION("log=%s", log),
    OPTION("log_level=%s", log_level),
    OPTION("uid=", set_uid),
    OPTION("uid=%u", uid),
    OPTION("gid=", set_gid),
    OPTION("gid=%u", gid),
    OPTION("umask=", set_umask),
    OPTION("umask=%o", umask),
    OPTION("-h", show_help),
    OPTION("--help", show_help),
    OPTION("-V", show_version),
    OPTION("--version", show_version),
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    FUSE_OPT_END,
};

static void usage(const char *prog)
{
	printf("usage: %s [ENDPOINT] MOUNTPOINT [options]\n"
	       "\n"
	       "Mount a PrimeHub server's admin images as files.\n"
	       "\n"
	       "ENDPOINT is the GraphQL URL, https://HOST/api/graphql.  Every setting comes\n"
	       "from the command line, else the environment, else the config file:\n"
	       "    endpoint   ENDPOINT, PRIMEHUB_API_ENDPOINT, \"endpoint\"\n"
	       "    API token  -o token_file=PATH, PRIMEHUB_API_TOKEN, \"api-token\"\n"
	       "The config file is ~/.primehub/config.json or -o config=PATH.  The token\n"
	       "itself is never taken from the command line (ps would show it).\n"
	       "\n"
	       "primehubfs options:\n"
	       "    -o config=PATH         config file instead of ~/.primehub/config.json\n"
	       "    -o token_file=PATH     read the API token from PATH\n"
	       "    -o ttl=SECONDS         how long fetched data counts as fresh (default 5)\n"
	       "    -o timeout=SECONDS     limit for one request to PrimeHub (default 15)\n"
	       "    -o connect_timeout=SECONDS  limit for connecting (default 5)\n"
	       "    -o max_tree_mb=N       largest list of images read, in MiB (default 1024)\n"
	       "    -o cafile=PATH         also trust these CA certificates for https\n"
	       "                           (TLS verification is always on)\n"
	       "    -o nonempty            mount over a non-empty directory, hiding its files\n"
	       "    -o dry_run             check and plan every change, send none (says what)\n"
	       "                           (refused without it)\n"
	       "    -o history_dir=DIR     keep versions of spec.json here, one directory per\n"
	       "                           server (default ~/.cache/primehubfs/history)\n"
	       "    -o history_keep=N      versions kept per image, 0 for none (default 100)\n"
	       "    -o log=WHERE           stderr, syslog or FILE (default syslog; -f: stderr)\n"
	       "                           a FILE is appended to and reopened on SIGHUP\n"
	       "    -o log_level=LEVEL     error, warn, info or debug (default info)\n"
	       "                           -d makes it debug\n"
	       "    -o uid=N, -o gid=N     owner and group every file shows (default: yours)\n"
	       "    -o umask=M             every file's permissions are 0777 & ~M (octal)\n"
	       "    -o poll_us=N           between requests, look for the next one for N\n"
	       "                           microseconds before sleeping (default 200; 0: never)\n"
	       "    -f                     stay in the foreground, log to stderr\n"
	       "    -d                     debug: foreground, every FUSE call logged\n"
	       "    -s                     single-threaded\n"
	       "    -h, --help             this help\n"
	       "    -V, --version          the version\n"
	       "\n"
	       "MOUNTPOINT/.status tells the mount's health in \"key: value\" lines: endpoint,\n"
	       "user, version, the last fetch and its age, whether refreshes fail and why,\n"
	       "requests and bytes since mount.  Reading it never asks the server.\n"
	       "\n"
	       "When a save, mkdir, touch or rm is refused, the reason is written to the\n"
	       ".error file of that directory (the mount's top for mkdir) and to the log\n"
	       "(-o log); a refused spec.json is kept beside it as\n"
	       "spec.json.rejected until the next good save.\n"
	       "\n"
	       "Access: the kernel checks every access against the file modes\n"
	       "(default_permissions is always on).  Files belong to the mounting user\n"
	       "(or -o uid=N,gid=N); spec.json and groups/ entries are 0644, other files\n"
	       "0444, directories 0755.  Only the mounting user can use the mount unless\n"
	       "-o allow_other is given; other users may then read, and change nothing\n"
	       "unless the modes let them (-o umask=0000 does).  Whoever can write through\n"
	       "the mount acts as the token's owner on PrimeHub.\n"
	       "\n",
	       prog);
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	if (key == KEY_ALLOW_OTHER) {
		o->allow_other = 1;
		return 1; /* libfuse needs it too */
	}
	if (key == FUSE_OPT_KEY_NONOPT) {
		if (o->nnonopt == 2) {
			fprintf(stderr, "primehubfs: unexpected argument '%s'\n", arg);
			return -1;
		}
		o->nonopt[o->nnonopt++] = strdup(arg);
		return 0; /* the mount point is put back after parsing */
	}
	return 1;
}

/*
 * A warning at mount: on stderr, which the person mounting sees (and which is
 * the log with -f), and in syslog too once daemonized.  The text is escaped:
 * it may hold a path.
 */
static void mount_warning(const char *text, bool foreground)
{
	char safe[2048];

	ph_escape_line(text, safe, sizeof(safe));
	fprintf(stderr, "primehubfs: warning: %s\n", safe);
	if (!foreground)
		log_warn("%s", safe);
}

/*
 * IMAGE/.history: versions of spec.json kept under the user's cache
 * directory (XDG), one directory per server.  A default that cannot be
 * made only costs the history (said once); a directory asked for with -o
 * history_dir that cannot be made refuses the mount.  Never inside the
 * mount point: the daemon must not touch its own mount.
 */
static int open_history(const struct options *o, const char *endpoint, const char *mountpoint,
                        struct phfs *fs, bool foreground)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char *base = NULL, *dir = NULL, *mnt = NULL, text[1024];
	struct history *h = NULL;
	struct ph_err err = {0};
	size_t mlen;
	int ret = 0;

	if (o->history_keep == 0)
		return 0;
	if (o->history_keep < -1 || o->history_keep > 100000) {
		fprintf(stderr, "primehubfs: -o history_keep=%d: use 0 (none) to 100000\n",
		        o->history_keep);
		return -1;
	}
	if (o->history_dir)
		base = strdup(o->history_dir);
	else if (xdg && xdg[0] == '/')
		ret = asprintf(&base, "%s/primehubfs/history", xdg);
	else if (home && home[0] == '/')
		ret = asprintf(&base, "%s/.cache/primehubfs/history", home);
	if (ret < 0 || !base) {
		if (o->history_dir)
			fprintf(stderr, "primehubfs: out of memory\n");
		else
			mount_warning("no HOME or XDG_CACHE_HOME: no history of spec.json is kept "
			              "(-o history_dir=DIR)",
			              foreground);
		free(base);
		return o->history_dir ? -1 : 0;
	}
	mnt = realpath(mountpoint, NULL);
	mlen = mnt ? strlen(mnt) : 0;
	if (mnt && strncmp(base, mnt, mlen) == 0 && (base[mlen] == '/' || base[mlen] == '\0')) {
		ph_err_set(&err, EINVAL, NULL, "the history directory %s is inside the mount point",
		           base);
		ret = -1;
	} else if (base[0] != '/') {
		ph_err_set(&err, EINVAL, NULL, "-o history_dir=%s: use an absolute path", base);
		ret = -1;
	} else if (history_server_dir(base, endpoint, &dir) < 0 ||
	           history_open(dir, o->history_keep > 0 ? (unsigned)o->history_keep : 0, &h,
	                        &err) < 0) {
		if (!err.msg[0])
			ph_err_set(&err, ENOMEM, NULL, "out of memory");
		ret = -1;
	}
	if (ret < 0 && o->history_dir) {
		fprintf(stderr, "primehubfs: %s\n", err.msg);
	} else if (ret < 0) {
		snprintf(text, sizeof(text), "%s: no history of spec.json is kept", err.msg);
		mount_warning(text, foreground);
		ret = 0;
	} else {
		phfs_set_history(fs, h);
	}
	free(base);
	free(dir);
	free(mnt);
	return ret;
}

/*
 * The token must not outlive its use in the environment block either:
 * /proc/PID/environ shows the block the process started with, so clear the
 * value in place (unsetenv only drops the pointer).  Also keeps it from the
 * fusermount3 helper libfuse starts for an unprivileged mount.
 */
static void scrub_token_env(void)
{
	extern char **environ;
	static const char name[] = "PRIMEHUB_API_TOKEN=";

	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, name, sizeof(name) - 1) == 0)
			explicit_bzero(*e + sizeof(name) - 1, strlen(*e + sizeof(name) - 1));
}

/* The token source for the GraphQL client: when the server rejects the token,
 * read it again from the file it came from (an administrator replaced it). */
struct token_reload {
	pthread_mutex_t lock;
	struct ph_config *cfg; /* cfg->token: the token in use */
	bool stale_logged;     /* "still the rejected token" said once */
};

static int token_reload_cb(void *arg, char **token)
{
	struct token_reload *r = arg;
	struct ph_err err = {0};
	char *fresh = NULL, *copy;
	int ret;

	*token = NULL;
	pthread_mutex_lock(&r->lock);
	ret = config_reload_token(r->cfg, &fresh, &err);
	if (ret == 0 && strcmp(fresh, r->cfg->token) == 0) {
		ret = ph_err_set(&err, EACCES, NULL, "%s still holds the rejected token",
		                 r->cfg->token_path);
		config_free_token(fresh);
		fresh = NULL;
	}
	if (ret < 0) {
		if (!r->stale_logged)
			log_warn("PrimeHub rejected the API token; no new one: %s", err.msg);
		r->stale_logged = true;
		pthread_mutex_unlock(&r->lock);
		return ret;
	}
	copy = strdup(fresh);
	if (!copy) {
		config_free_token(fresh);
		pthread_mutex_unlock(&r->lock);
		return -ENOMEM;
	}
	config_free_token(r->cfg->token);
	r->cfg->token = copy;
	r->stale_logged = false;
	log_info("PrimeHub rejected the API token; trying the new one in %s", r->cfg->token_path);
	pthread_mutex_unlock(&r->lock);
	*token = fresh;
	return 0;
}

/* SIGHUP: only a flag, read by the next log line (async-signal-safe). */
static void on_sighup(int sig)
{
	(void)sig;
	log_request_reopen();
}

/* libfuse's messages, one line each, in our log at the matching level. */
static void fuse_log_to_ours(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n == 0)
		return;
	log_msg(level <= FUSE_LOG_ERR       ? LOG_LVL_ERROR
	        : level == FUSE_LOG_WARNING ? LOG_LVL_WARN
	        : level == FUSE_LOG_DEBUG   ? LOG_LVL_DEBUG
	                                    : LOG_LVL_INFO,
	        "%s", line);
}

/*
 * Is path (absolute, canonical, as libfuse's realpath left it) the mount
 * point of a mounted filesystem?  /proc/self/mountinfo knows for certain (a
 * bind mount of the same filesystem has the parent's st_dev); fall back to
 * st_dev when it cannot be read.  An autofs mount point is not counted:
 * systemd's x-systemd.automount mounts the real filesystem on top of it.
 */
static bool is_mount_point(const char *path, const struct stat *st)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	bool found = false;

	if (!f) {
		char parent[PATH_MAX];
		struct stat pst;
		char *slash;

		snprintf(parent, sizeof(parent), "%s", path);
		slash = strrchr(parent, '/');
		if (!slash)
			return false;
		slash[slash == parent ? 1 : 0] = '\0';
		return stat(parent, &pst) == 0 && pst.st_dev != st->st_dev;
	}
	while (!found && fgets(line, sizeof(line), f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE ... */
		char mp[PATH_MAX], unq[PATH_MAX], *sep;
		size_t j = 0;

		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		for (size_t i = 0; mp[i] && j + 1 < sizeof(unq); i++) {
			/* mountinfo writes space, tab, newline, backslash as \ooo */
			if (mp[i] == '\\' && mp[i + 1] >= '0' && mp[i + 1] <= '3' && mp[i + 2] &&
			    mp[i + 3]) {
				unq[j++] = (char)((mp[i + 1] - '0') * 64 + (mp[i + 2] - '0') * 8 +
				                  (mp[i + 3] - '0'));
				i += 3;
			} else {
				unq[j++] = mp[i];
			}
		}
		unq[j] = '\0';
		if (strcmp(unq, path) != 0)
			continue;
		sep = strstr(line, " - ");
		found = !(sep && strncmp(sep + 3, "autofs ", 7) == 0);
	}
	fclose(f);
	return found;
}

/*
 * Refuse, with one line, a mount point that would mount but not work or hide
 * something: not a directory (libfuse mounts onto a file and every access is
 * then EIO), a non-empty directory (its files vanish without a word; libfuse
 * 3 no longer checks) unless -o nonempty, a directory something is already
 * mounted on (the mounts would stack).
 */
static int check_mount_point(const char *path, bool nonempty)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	bool empty = true;

	/* "/dev/fd/N": a /dev/fuse descriptor a privileged helper already
	 * mounted (libfuse's convention); there is no directory to check. */
	if (strncmp(path, "/dev/fd/", 8) == 0 && path[8] &&
	    strspn(path + 8, "0123456789") == strlen(path + 8))
		return 0;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "primehubfs: bad mount point %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "primehubfs: mount point %s is not a directory\n", path);
		return -1;
	}
	if (is_mount_point(path, &st)) {
		fprintf(stderr,
		        "primehubfs: %s is already a mount point (unmount it first: "
		        "fusermount3 -u %s)\n",
		        path, path);
		return -1;
	}
	if (nonempty)
		return 0;
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "primehubfs: cannot read mount point %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	while (empty && (de = readdir(d)))
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(d);
	if (!empty) {
		fprintf(stderr,
		        "primehubfs: mount point %s is not empty (its files would be hidden; "
		        "-o nonempty mounts anyway)\n",
		        path);
		return -1;
	}
	return 0;
}

/* -o fsname=ENDPOINT,subtype=primehubfs, with the option syntax's commas
 * and backslashes escaped. */
static int add_source_options(struct fuse_args *args, const char *endpoint)
{
	size_t n = strlen(endpoint);
	char *opt = malloc(sizeof("-ofsname=") + 2 * n);
	char *p;
	int ret;

	if (!opt)
		return -ENOMEM;
	p = opt + sprintf(opt, "-ofsname=");
	for (const char *e = endpoint; *e; e++) {
		if (*e == ',' || *e == '\\')
			*p++ = '\\';
		*p++ = *e;
	}
	*p = '\0';
	ret =
	    fuse_opt_add_arg(args, opt) == 0 && fuse_opt_add_arg(args, "-osubtype=primehubfs") == 0
	        ? 0
	        : -ENOMEM;
	free(opt);
	return ret;
}

static int run(struct fuse_args *args, struct options *o)
{
	struct fuse_cmdline_opts cl = {0};
	struct ph_config_input cin = {0};
	struct ph_config cfg = {0};
	struct http_options hopts = {0};
	struct http_client *http = NULL;
	struct gql_client *gql = NULL;
	struct ph_api *api = NULL;
	struct phfs *fs = NULL;
	struct fuse_session *se = NULL;
	struct ph_err err = {0};
	struct token_reload reload = {.lock = PTHREAD_MUTEX_INITIALIZER, .cfg = &cfg};
	char *user = NULL;
	enum log_level level;
	int ret = 1;

	if (fuse_parse_cmdline(args, &cl) != 0)
		return 1;
	if (!cl.mountpoint) {
		fprintf(stderr, "primehubfs: no mount point given (see --help)\n");
		goto out;
	}
	if (check_mount_point(cl.mountpoint, o->nonempty) < 0)
		goto out;
	if (o->poll_us < -1 || o->poll_us > 10000) {
		fprintf(stderr, "primehubfs: -o poll_us=%d: use 0 to 10000 microseconds\n",
		        o->poll_us);
		goto out;
	}
	level = cl.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO;
	if (o->log_level && log_parse_level(o->log_level, &level) < 0) {
		fprintf(stderr, "primehubfs: -o log_level=%s: use error, warn, info or debug\n",
		        o->log_level);
		goto out;
	}
	if (log_open(o->log, level, cl.foreground, &err) < 0) {
		fprintf(stderr, "primehubfs: %s\n", err.msg);
		goto out;
	}
	/* libfuse's own messages go where ours go (stderr is /dev/null once
	 * daemonized). */
	fuse_set_log_func(fuse_log_to_ours);

	cin.endpoint_arg = o->nnonopt == 2 ? o->nonopt[0] : NULL;
	cin.config_path = o->config;
	cin.token_file = o->token_file;
	cin.getenv_fn = getenv;
	if (config_resolve(&cin, &cfg, &err) < 0) {
		scrub_token_env();
		fprintf(stderr, "primehubfs: %s\n", err.msg);
		goto out;
	}
	scrub_token_env();
	if (o->cafile && access(o->cafile, R_OK) != 0) {
		fprintf(stderr, "primehubfs: cannot read cafile %s: %s\n", o->cafile,
		        strerror(errno));
		goto out;
	}

	hopts.timeout_ms = (o->timeout > 0 ? o->timeout : 15) * 1000L;
	hopts.connect_timeout_ms = (o->connect_timeout > 0 ? o->connect_timeout : 5) * 1000L;
	hopts.ca_file = o->cafile;
	if (http_client_new(&hopts, &http, &err) < 0 ||
	    gql_client_new(http, cfg.endpoint, cfg.token, &gql, &err) < 0 ||
	    ph_api_new(gql, &api) < 0) {
		fprintf(stderr, "primehubfs: %s\n", err.msg[0] ? err.msg : "out of memory");
		goto out;
	}
	if (cfg.token_path)
		gql_client_set_token_source(gql, token_reload_cb, &reload);
	ph_api_set_dry_run(api, o->dry_run != 0);
	{
		size_t max_tree;

		if (config_max_tree_bytes(o->max_tree_mb, &max_tree, &err) < 0) {
			fprintf(stderr, "primehubfs: %s\n", err.msg);
			goto out;
		}
		gql_client_set_max_stream(gql, max_tree);
	}
	/* Refuse to mount, with one clear line, when the endpoint does not
	 * answer, the token is rejected or the user is no administrator. */
	if (ph_check_admin(api, &user, &err) < 0) {
		/* The usual mistake: the server's address without the API path. */
		fprintf(stderr, "primehubfs: cannot mount %s: %s%s\n", cfg.endpoint, err.msg,
		        strncmp(err.msg, "HTTP 404 ", 9) == 0
		            ? " (does the URL end in /api/graphql?)"
		            : "");
		goto out;
	}
	for (int i = 0; i < cfg.nwarnings; i++)
		mount_warning(cfg.warning[i], cl.foreground);
	if (o->allow_other) {
		char text[512];

		snprintf(text, sizeof(text),
		         "-o allow_other: other local users can use this mount; whoever can write "
		         "through it acts as %s on PrimeHub with this token (file modes decide "
		         "who can write: by default only the files' owner)",
		         user);
		mount_warning(text, cl.foreground);
	}

	/* mount, findmnt and df show which server is mounted (the source) and
	 * what (the type fuse.primehubfs), so two mounts can be told apart. */
	if (add_source_options(args, cfg.endpoint) < 0) {
		fprintf(stderr, "primehubfs: out of memory\n");
		goto out;
	}
	if (phfs_new(api, (o->ttl >= 0 ? o->ttl : 5) * 1000L, &fs) < 0 ||
	    phfs_set_user(fs, user) < 0) {
		fprintf(stderr, "primehubfs: out of memory\n");
		goto out;
	}
	if (open_history(o, cfg.endpoint, cl.mountpoint, fs, cl.foreground) < 0)
		goto out;
	phfs_set_owner(fs, o->set_uid ? &(uid_t){o->uid} : NULL,
	               o->set_gid ? &(gid_t){o->gid} : NULL,
	               o->set_umask ? &(mode_t){o->umask} : NULL);
	se = phfs_session_new(fs, args);
	if (!se)
		goto out;
	gql_client_set_abort(gql, phfs_request_interrupted, fs);
	if (fuse_session_mount(se, cl.mountpoint) != 0)
		goto out_session;
	if (fuse_daemonize(cl.foreground) != 0)
		goto out_unmount;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_unmount;
	/* SIGHUP is logrotate's "reopen your log", not "unmount" (libfuse
	 * just made it one): replace libfuse's handler. */
	{
		struct sigaction sa = {.sa_handler = on_sighup, .sa_flags = SA_RESTART};

		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGHUP, &sa, NULL) != 0)
			goto out_signals;
	}
	if (phfs_start(fs) < 0) {
		fprintf(stderr, "primehubfs: cannot start the refresher thread\n");
		goto out_signals;
	}
	log_info("mounted %s (as %s, token from %s) on %s, primehubfs %s, pid %d", cfg.endpoint,
	         user, cfg.token_source, cl.mountpoint, PRIMEHUBFS_VERSION, (int)getpid());

	if (cl.singlethread) {
		ret = fuse_session_loop(se);
	} else if (cl.clone_fd) {
		/* A device per thread: libfuse's loop, as asked. */
		struct fuse_loop_config *lc = fuse_loop_cfg_create();

		if (!lc) {
			ret = 1;
			goto out_signals;
		}
		fuse_loop_cfg_set_clone_fd(lc, 1);
		/* libfuse 3.14's command line leaves UINT_MAX for "not given",
		 * which its own setter then rejects with a warning at every
		 * mount: pass only a value someone chose. */
		if (cl.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lc, cl.max_idle_threads);
		if (cl.max_threads > 0 && cl.max_threads < 100000) /* else libfuse's default */
			fuse_loop_cfg_set_max_threads(lc, cl.max_threads);
		ret = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
	} else {
		struct fs_loop_options lo = {
		    .max_threads =
		        cl.max_threads > 0 && cl.max_threads < 100000 ? cl.max_threads : 10,
		    /* 200: cat spends ~50 us in its own calls between one
		     * file's OPEN and the next; polling only 50 us, the
		     * reader slept between files and each RELEASE and OPEN
		     * paid its wake-up (cat of 10,000 spec.json 11% slower). */
		    .poll_us = o->poll_us >= 0 ? o->poll_us : 200,
		};

		ret = fs_loop_run(se, &lo);
	}
	/* libfuse returns the signal that ended the loop (SIGTERM, SIGINT):
	 * a requested stop, not a failure. */
	ret = ret < 0 ? 1 : 0;
out_signals:
	fuse_remove_signal_handlers(se);
out_unmount:
	fuse_session_unmount(se);
out_session:
	/* Handles are gone once unmounted; the notifier stops here (nothing
	 * may reach a destroyed session), the refresher in phfs_free. */
	if (phfs_quiesce(fs))
		fuse_session_destroy(se);
	se = NULL;
out:
	phfs_free(fs);
	ph_api_free(api);
	gql_client_free(gql);
	http_client_free(http);
	config_clear(&cfg);
	free(user);
	free(cl.mountpoint);
	return ret;
}

/*
 * The first listing of a big server is mostly page faults: the snapshot of
 * 100,000 images is ~90 MB of small allocations, and in a virtual machine
 * each 4 KiB fault can cost ~10 us (a third of a cold `ls -l`).  glibc's
 * malloc backs its heap with transparent huge pages (512 times fewer faults)
 * only when GLIBC_TUNABLES says so at start, and only in its main arena: so
 * the daemon starts itself once more with hugetlb=1 and one arena.
 *
 * mxfast=0 turns off malloc's fastbins.  A refresh of 100,000 images frees
 * about a million small blocks; kept in fastbins, they are all merged at
 * once, under the arena's lock, by the next large malloc or free, and a
 * FUSE request then waited ~50 ms for that lock.  Without fastbins each
 * free merges its own block (the worst stat during such a refresh went
 * 51 -> 25 ms; walks and listings measured no slower).
 *
 * A GLIBC_TUNABLES already set (by the user, or by this exec) is left as it
 * is; when the exec fails, the daemon goes on as it is.
 */
static void reexec_with_heap_tunables(char *argv[])
{
#ifdef __GLIBC__
	if (getenv("GLIBC_TUNABLES") ||
	    setenv("GLIBC_TUNABLES",
	           "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1:glibc.malloc.mxfast=0", 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	unsetenv("GLIBC_TUNABLES"); /* not re-executed (no /proc?): run as we are */
#else
	(void)argv;
#endif
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = {.ttl = -1, .history_keep = -1, .poll_us = -1};
	int ret;

	reexec_with_heap_tunables(argv);
	/* First of all, before the token is read: a core of this process would
	 * hold the token.  Not dumpable also means no ptrace by the same user,
	 * and /proc/PID/{environ,mem,...} owned by root. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		fprintf(stderr, "primehubfs: cannot make the process non-dumpable: %s\n",
		        strerror(errno));
		return 1;
	}
	if (fuse_opt_parse(&args, &o, option_spec, opt_proc) == -1)
		return 1;
	if (o.show_help) {
		usage(argv[0]);
		printf("FUSE options:\n");
		fuse_lowlevel_help();
		ret = 0;
		goto out;
	}
	if (o.show_version) {
		printf("primehubfs version %s\n", PRIMEHUBFS_VERSION);
		printf("FUSE library version %s\n", fuse_pkgversion());
		ret = 0;
		goto out;
	}
	/* "primehubfs URL": the only argument is an endpoint, not a directory. */
	if (o.nnonopt == 1 && strstr(o.nonopt[0], "://")) {
		fprintf(stderr,
		        "primehubfs: no mount point given (usage: %s [ENDPOINT] "
		        "MOUNTPOINT [options])\n",
		        argv[0]);
		ret = 1;
		goto out;
	}
	if (o.nnonopt == 0) {
		fprintf(stderr, "usage: %s [ENDPOINT] MOUNTPOINT [options] (see --help)\n",
		        argv[0]);
		ret = 1;
		goto out;
	}
	/* The kernel checks permissions against the modes and owners the files
	 * show.  Always: without it, with -o allow_other, any local user could
	 * act with the token.  There is deliberately no way to turn it off. */
	if (fuse_opt_add_arg(&args, "-odefault_permissions") != 0 ||
	    /* The last non-option is the mount point; give it back to libfuse. */
	    fuse_opt_add_arg(&args, o.nonopt[o.nnonopt - 1]) != 0) {
		ret = 1;
		goto out;
	}
	ret = run(&args, &o);
out:
	fuse_opt_free_args(&args);
	free(o.config);
	free(o.token_file);
	free(o.cafile);
	free(o.history_dir);
	free(o.log);
	free(o.log_level);
	free(o.nonopt[0]);
	free(o.nonopt[1]);
	return ret;
}
