/* test_log.c - every log line is one terminal-safe line: names with line
 * breaks, ANSI escapes or a right-to-left override cannot forge, colour or
 * reorder a line.  stderr (the foreground log) is redirected to a file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "primehubfs/log.h"
#include "unit.h"

static char *slurp(FILE *f)
{
	static char buf[65536];
	size_t n;

	fflush(stderr);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	return buf;
}

int main(void)
{
	FILE *capture = tmpfile();
	int saved = dup(2);
	char *text, big[3000];

	CHECK(capture != NULL && saved >= 0);
	fflush(stderr);
	dup2(fileno(capture), 2);

	log_setup(false, false);
	log_warn("mkdir '%s' refused", "evil\x1b[31mred\xe2\x80\xae"
	                               "etalp\nprimehubfs: info: forged");
	log_debug("not shown without -d");
	log_info("a\\b \xff tab\there");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[10] = '\n';
	log_error("%s", big);
	text = slurp(capture);

	dup2(saved, 2);
	close(saved);

	CHECK(strchr(text, '\x1b') == NULL);
	CHECK(strstr(text, "\xe2\x80\xae") == NULL);
	CHECK_CONTAINS(text,
	               "primehubfs: warning: mkdir 'evil\\x1b[31mred\\u202eetalp\\nprimehubfs: "
	               "info: forged' refused\n");
	CHECK(strstr(text, "not shown") == NULL);
	CHECK_CONTAINS(text, "primehubfs: info: a\\b \\xff tab\\there\n");
	/* Exactly three lines: nothing a message held started a line of its own. */
	{
		int lines = 0;

		for (const char *p = text; *p; p++)
			lines += *p == '\n';
		CHECK_INT(lines, 3);
	}
	CHECK_CONTAINS(text, "primehubfs: error: xxxxxxxxxx\\nxxx");
	fclose(capture);

	/* Levels by name, and nothing else. */
	{
		enum log_level l;

		CHECK_INT(log_parse_level("warn", &l), 0);
		CHECK_INT(l, LOG_LVL_WARN);
		CHECK_INT(log_parse_level("debug", &l), 0);
		CHECK_INT(l, LOG_LVL_DEBUG);
		CHECK_INT(log_parse_level("warning", &l), -EINVAL);
		CHECK_INT(log_parse_level("", &l), -EINVAL);
	}
	/* A file: appended to, at the level asked, reopened by name after a
	 * "SIGHUP" (logrotate moved it). */
	{
		char dir[] = "/tmp/phfs-logtest-XXXXXX", path[128], moved[128];
		struct ph_err err = {0};
		FILE *f;
		static char buf[8192];
		size_t n;

		CHECK(mkdtemp(dir) != NULL);
		snprintf(path, sizeof(path), "%s/log", dir);
		snprintf(moved, sizeof(moved), "%s/log.1", dir);
		f = fopen(path, "w");
		fputs("old\n", f);
		fclose(f);
		CHECK_INT(log_open(path, LOG_LVL_WARN, false, &err), 0);
		CHECK_STR(log_destination(), path);
		CHECK(!log_enabled(LOG_LVL_INFO) && log_enabled(LOG_LVL_WARN));
		log_info("not at warn");
		log_warn("first %d", 1);
		CHECK_INT(rename(path, moved), 0);
		log_request_reopen();
		log_error("second");
		f = fopen(moved, "r");
		n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		CHECK(strncmp(buf, "old\n", 4) == 0);
		CHECK_CONTAINS(buf, "]: warning: first 1\n");
		CHECK(strstr(buf, "not at warn") == NULL && strstr(buf, "second") == NULL);
		f = fopen(path, "r");
		CHECK(f != NULL);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		CHECK_CONTAINS(buf, "]: error: second\n");
		CHECK(strstr(buf, "first") == NULL);
		unlink(path);
		unlink(moved);
		rmdir(dir);
		/* A file that cannot be made is an error with its name. */
		CHECK_INT(log_open("/nonexistent-dir/log", LOG_LVL_INFO, true, &err), -ENOENT);
		CHECK_CONTAINS(err.msg, "/nonexistent-dir/log");
	}
	UNIT_DONE();
}
