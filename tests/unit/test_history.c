/* test_history.c - versions of spec.json kept on disk. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "primehubfs/history.h"
#include "unit.h"

static size_t count(struct history *h, const char *image)
{
	char **names;
	size_t n = 0;

	if (history_list(h, image, &names, &n) == 0)
		history_names_free(names);
	return n;
}

int main(void)
{
	char base[] = "/tmp/phfs-history-XXXXXX", *dir, *text, **names;
	struct ph_err err = {0};
	struct history *h, *again;
	struct timespec mtime;
	struct stat st;
	size_t n, len, size;

	CHECK(mkdtemp(base) != NULL);
	CHECK_INT(history_server_dir(base, "https://hub.example.com:8443/api/graphql", &dir), 0);
	CHECK(strstr(dir, "/https___hub.example.com_8443_api_graphql") != NULL);
	CHECK_INT(history_open("relative/dir", 0, &h, &err), -EINVAL);
	CHECK_INT(history_open(dir, 3, &h, &err), 0);
	CHECK_INT(stat(dir, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0700);

	/* Nothing yet: an empty list, not an error. */
	CHECK_INT(history_list(h, "tf-1", &names, &n), 0);
	CHECK_INT(n, 0);
	CHECK(names && !names[0]);
	history_names_free(names);

	/* One version; the same text again keeps nothing new. */
	CHECK_INT(history_keep(h, "tf-1", "{\"v\": 1}\n", 9), 0);
	CHECK_INT(history_keep(h, "tf-1", "{\"v\": 1}\n", 9), 0);
	CHECK_INT(count(h, "tf-1"), 1);
	CHECK_INT(history_keep(h, "tf-1", "{\"v\": 2}\n", 9), 0);
	CHECK_INT(history_list(h, "tf-1", &names, &n), 0);
	CHECK_INT(n, 2);
	CHECK(strcmp(names[0], names[1]) < 0); /* oldest first */
	CHECK(strlen(names[0]) == strlen("2026-12-01T10:02:11.250Z.json"));
	CHECK_INT(history_read(h, "tf-1", names[1], &text, &len), 0);
	CHECK_INT(len, 9);
	CHECK(text && memcmp(text, "{\"v\": 2}\n", 9) == 0);
	free(text);
	CHECK_INT(history_stat(h, "tf-1", names[0], &size, &mtime), 0);
	CHECK_INT(size, 9);
	CHECK(mtime.tv_sec > 0);
	history_names_free(names);

	/* Names are checked: nothing outside the directory can be read. */
	CHECK_INT(history_read(h, "tf-1", "../tf-1", &text, &len), -ENOENT);
	CHECK_INT(history_read(h, "..", "tf-1", &text, &len), -ENOENT);
	CHECK_INT(history_stat(h, "tf-1", "nope.json", &size, &mtime), -ENOENT);
	CHECK_INT(history_keep(h, "../escape", "x", 1), -EINVAL);

	/* Bounded: three kept, the oldest went. */
	CHECK_INT(history_keep(h, "tf-1", "3", 1), 0);
	CHECK_INT(history_keep(h, "tf-1", "4", 1), 0);
	CHECK_INT(history_list(h, "tf-1", &names, &n), 0);
	CHECK_INT(n, 3);
	CHECK_INT(history_read(h, "tf-1", names[0], &text, &len), 0);
	CHECK(len == 9 && memcmp(text, "{\"v\": 2}\n", 9) == 0);
	free(text);
	history_names_free(names);

	/* Another mount of the same server compares with what is on disk. */
	CHECK_INT(history_open(dir, 3, &again, &err), 0);
	CHECK_INT(history_keep(again, "tf-1", "4", 1), 0);
	CHECK_INT(count(again, "tf-1"), 3);
	CHECK_INT(history_keep(again, "tf-1", "3", 1), 0); /* back to an older text */
	CHECK_INT(history_list(again, "tf-1", &names, &n), 0);
	CHECK_INT(n, 3);
	CHECK_INT(history_read(again, "tf-1", names[2], &text, &len), 0);
	CHECK(len == 1 && text[0] == '3');
	free(text);
	history_names_free(names);
	CHECK_INT(count(again, "tf-2"), 0);
	/* A reader's view keeps a version only of an image with a history. */
	CHECK_INT(history_keep_if_tracked(again, "tf-2", "seen", 4), 0);
	CHECK_INT(count(again, "tf-2"), 0);
	CHECK_INT(history_keep_if_tracked(again, "tf-1", "seen", 4), 0);
	CHECK_INT(count(again, "tf-1"), 3);
	CHECK_INT(history_list(again, "tf-1", &names, &n), 0);
	CHECK_INT(history_read(again, "tf-1", names[2], &text, &len), 0);
	CHECK(len == 4 && memcmp(text, "seen", 4) == 0);
	free(text);
	history_names_free(names);
	history_close(again);
	history_close(h);

	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		CHECK_INT(system(cmd), 0);
	}
	free(dir);
	UNIT_DONE();
}
