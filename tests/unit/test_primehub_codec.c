/*
 * test_primehub_codec.c - API JSON <-> the C model, without a network:
 * answers as PrimeHub gives them, null vs "" kept apart, malformed input
 * refused or (in the tree) left out with one warning, never a crash, and the
 * inputs we send.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "primehubfs/primehub.h"
#include "../../src/net_private.h"
#include "unit.h"

/* tf-2 as the ImageFields fragment reads it from PrimeHub. */
static const char TF2[] =
    "{\"id\":\"tf-2\",\"name\":\"tf-2\",\"displayName\":\"TensorFlow 2.5.0 (Python 3.7)\","
    "\"description\":\"TensorFlow 2.5.0 (Python 3.7)\",\"type\":\"both\","
    "\"url\":\"infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a\","
    "\"urlForGpu\":\"infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a-gpu-cuda-11\","
    "\"groupName\":null,\"useImagePullSecret\":null,\"global\":true,\"isReady\":true,"
    "\"logEndpoint\":\"https://example.primehub.io/api/logs/images/tf-2/job\","
    "\"groups\":[],\"imageSpec\":null,\"jobStatus\":null}";

static const char BASE_NOTEBOOK[] =
    "{\"id\":\"base-notebook\",\"name\":\"base-notebook\",\"displayName\":\"base-notebook\","
    "\"description\":\"base notebook\",\"type\":\"both\","
    "\"url\":\"infuseai/docker-stacks:base-notebook-63fdf50a\","
    "\"urlForGpu\":\"infuseai/docker-stacks:base-notebook-63fdf50a-gpu\",\"groupName\":null,"
    "\"useImagePullSecret\":null,\"global\":false,\"isReady\":true,"
    "\"logEndpoint\":\"https://example.primehub.io/api/logs/images/base-notebook/job\","
    "\"groups\":[{\"id\":\"71ac1e32-65fa-4e8e-a735-ba282e3149b1\",\"name\":\"example-group-1\","
    "\"displayName\":\"Example Group 1\"},{\"id\":\"0fdaea59-705a-4546-8d13-2d52511342b0\","
    "\"name\":\"example-group-2\",\"displayName\":null}],\"imageSpec\":null,\"jobStatus\":null}";

/* A custom image read back after createImage. */
static const char CUSTOM[] =
    "{\"id\":\"my-custom-image\",\"name\":\"my-custom-image\","
    "\"displayName\":\"my-custom-image\",\"description\":null,\"type\":\"both\",\"url\":null,"
    "\"urlForGpu\":null,\"groupName\":null,\"useImagePullSecret\":\"\",\"global\":true,"
    "\"isReady\":false,"
    "\"logEndpoint\":\"https://example.primehub.io/api/logs/images/my-custom-image/job\","
    "\"groups\":[],\"imageSpec\":{\"baseImage\":\"jupyter/base-notebook\",\"pullSecret\":null,"
    "\"packages\":{\"apt\":[],\"pip\":[\"pytest\"],\"conda\":[]},\"cancel\":false,"
    "\"updateTime\":\"2023-04-19T02:53:41.000Z\"},\"jobStatus\":null}";

static struct ph_image *decode_ok(const char *json)
{
	cJSON *node = cJSON_Parse(json);
	struct ph_image *img = NULL;
	struct ph_err err;

	CHECK(node != NULL);
	CHECK_INT(ph_decode_image(node, &img, &err), 0);
	cJSON_Delete(node);
	return img;
}

/* Decode json; expect -EPROTO and a message containing `want`. */
static void decode_bad(const char *json, const char *want)
{
	cJSON *node = cJSON_Parse(json);
	struct ph_image *img = (struct ph_image *)1;
	struct ph_err err;

	ph_err_clear(&err);
	CHECK(node != NULL);
	CHECK_INT(ph_decode_image(node, &img, &err), -EPROTO);
	CHECK(img == NULL);
	CHECK_INT(err.errnum, EPROTO);
	CHECK_CONTAINS(err.msg, want);
	cJSON_Delete(node);
}

static void test_decode_samples(void)
{
	struct ph_image *img = decode_ok(TF2);

	if (img) {
		CHECK_STR(img->id, "tf-2");
		CHECK_STR(img->name, "tf-2");
		CHECK_STR(img->display_name, "TensorFlow 2.5.0 (Python 3.7)");
		CHECK_STR(img->description, "TensorFlow 2.5.0 (Python 3.7)");
		CHECK_STR(img->type, "both");
		CHECK_STR(img->url, "infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a");
		CHECK_STR(img->url_for_gpu,
		          "infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a-gpu-cuda-11");
		CHECK(img->group_name == NULL);
		CHECK(img->use_image_pull_secret == NULL);
		CHECK(img->global);
		CHECK(img->is_ready);
		CHECK_STR(img->log_endpoint,
		          "https://example.primehub.io/api/logs/images/tf-2/job");
		CHECK_INT(img->ngroups, 0);
		CHECK(img->groups == NULL);
		CHECK(img->image_spec == NULL);
		CHECK(!img->has_job_status);
		CHECK(img->job_phase == NULL && img->job_image == NULL);
	}
	ph_image_free(img);

	img = decode_ok(BASE_NOTEBOOK);
	if (img) {
		CHECK(!img->global);
		CHECK_INT(img->ngroups, 2);
		CHECK_STR(img->groups[0].id, "71ac1e32-65fa-4e8e-a735-ba282e3149b1");
		CHECK_STR(img->groups[0].name, "example-group-1");
		CHECK_STR(img->groups[0].display_name, "Example Group 1");
		CHECK_STR(img->groups[1].name, "example-group-2");
		CHECK(img->groups[1].display_name == NULL);
	}
	ph_image_free(img);

	img = decode_ok(CUSTOM);
	if (img) {
		/* "" after create, kept apart from null. */
		CHECK(img->use_image_pull_secret != NULL);
		CHECK_STR(img->use_image_pull_secret, "");
		CHECK(img->url == NULL);
		CHECK(img->url_for_gpu == NULL);
		CHECK(img->description == NULL);
		CHECK(img->global);
		CHECK(!img->is_ready);
		CHECK_INT(img->ngroups, 0);
		CHECK(!img->has_job_status);
		CHECK(img->image_spec != NULL);
		if (img->image_spec) {
			struct ph_build_spec *s = img->image_spec;

			CHECK_STR(s->base_image, "jupyter/base-notebook");
			CHECK(s->pull_secret == NULL);
			CHECK(s->has_packages);
			CHECK_INT(s->apt.n, 0);
			CHECK_INT(s->pip.n, 1);
			CHECK_STR(s->pip.n ? s->pip.items[0] : NULL, "pytest");
			CHECK_INT(s->conda.n, 0);
			CHECK(!s->cancel);
			CHECK_STR(s->update_time, "2023-04-19T02:53:41.000Z");
		}
	}
	ph_image_free(img);
}

static void test_decode_nulls(void)
{
	struct ph_image *img;

	/* Missing keys are null. */
	img = decode_ok("{\"id\":\"x\",\"name\":\"x\"}");
	if (img) {
		CHECK(img->display_name == NULL && img->description == NULL && img->type == NULL);
		CHECK(img->url == NULL && img->url_for_gpu == NULL && img->group_name == NULL);
		CHECK(img->use_image_pull_secret == NULL && img->log_endpoint == NULL);
		CHECK(!img->global && !img->is_ready);
		CHECK(img->ngroups == 0 && img->image_spec == NULL && !img->has_job_status);
	}
	ph_image_free(img);

	/* "" stays "" everywhere, and false stays false. */
	img = decode_ok("{\"id\":\"x\",\"name\":\"x\",\"description\":\"\",\"type\":\"\","
	                "\"url\":\"\",\"groupName\":\"\",\"global\":false,\"groups\":null}");
	if (img) {
		CHECK_STR(img->description, "");
		CHECK_STR(img->type, "");
		CHECK_STR(img->url, "");
		CHECK_STR(img->group_name, "");
		CHECK(img->display_name == NULL);
	}
	ph_image_free(img);

	/* imageSpec with packages null; jobStatus with one null member. */
	img = decode_ok("{\"id\":\"x\",\"name\":\"x\",\"imageSpec\":{\"baseImage\":\"b\","
	                "\"packages\":null,\"cancel\":true},\"jobStatus\":{\"phase\":\"Running\","
	                "\"image\":null}}");
	if (img) {
		CHECK(img->image_spec && !img->image_spec->has_packages);
		CHECK(img->image_spec && img->image_spec->cancel);
		CHECK(img->image_spec && img->image_spec->update_time == NULL);
		CHECK(img->has_job_status);
		CHECK_STR(img->job_phase, "Running");
		CHECK(img->job_image == NULL);
	}
	ph_image_free(img);

	/* packages present with a list missing and a null item: empty, skipped. */
	img = decode_ok("{\"id\":\"x\",\"name\":\"x\",\"imageSpec\":{\"packages\":{\"apt\":"
	                "[\"curl\",null,\"git\"],\"pip\":null}},\"jobStatus\":{}}");
	if (img && img->image_spec) {
		CHECK(img->image_spec->has_packages);
		CHECK_INT(img->image_spec->apt.n, 2);
		CHECK_STR(img->image_spec->apt.items[1], "git");
		CHECK_INT(img->image_spec->pip.n, 0);
		CHECK_INT(img->image_spec->conda.n, 0);
		CHECK(img->image_spec->base_image == NULL);
		CHECK(img->has_job_status);
		CHECK(img->job_phase == NULL);
	}
	ph_image_free(img);
}

static void test_decode_malformed(void)
{
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"displayName\":5}",
	           "unexpected answer from server: displayName is not a string");
	decode_bad("{\"name\":\"x\"}", "id is missing");
	decode_bad("{\"id\":null,\"name\":\"x\"}", "id is missing");
	decode_bad("{\"id\":\"x\"}", "name is missing");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"global\":\"true\"}", "global is not a boolean");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"isReady\":1}", "isReady is not a boolean");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"groups\":{}}", "groups is not a list");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"groups\":[null,{\"id\":1,\"name\":\"g\"}]}",
	           "groups[1].id is not a string");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"groups\":[\"g\"]}",
	           "groups[0] is not an object");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"imageSpec\":\"spec\"}",
	           "imageSpec is not an object");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"imageSpec\":{\"packages\":[]}}",
	           "imageSpec.packages is not an object");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"imageSpec\":{\"packages\":{\"pip\":[1]}}}",
	           "imageSpec.packages.pip has an item that is not a string");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"imageSpec\":{\"packages\":{\"conda\":\"x\"}}}",
	           "imageSpec.packages.conda is not a list");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"imageSpec\":{\"cancel\":\"no\"}}",
	           "imageSpec.cancel is not a boolean");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"jobStatus\":[]}", "jobStatus is not an object");
	decode_bad("{\"id\":\"x\",\"name\":\"x\",\"jobStatus\":{\"phase\":{}}}",
	           "jobStatus.phase is not a string");
	decode_bad("[]", "image is not an object");
	decode_bad("\"tf-2\"", "image is not an object");
	{
		struct ph_image *img = (struct ph_image *)1;

		CHECK_INT(ph_decode_image(NULL, &img, NULL), -EPROTO);
		CHECK(img == NULL);
	}
}

/* ---- the streaming decoder against the cJSON one ---- */

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Run one decoder with stderr (the log) captured into log[logsz]. */
static int logged(const cJSON *data, const char *text, size_t len, struct ph_tree *t,
                  struct ph_err *err, char *log, size_t logsz)
{
	FILE *tmp = tmpfile();
	int saved = dup(2), ret;
	size_t n;

	fflush(stderr);
	dup2(fileno(tmp), 2);
	ret = text ? ph_decode_tree_text(text, len, t, err) : ph_decode_tree(data, t, err);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(log, 1, logsz - 1, tmp);
	log[n] = '\0';
	fclose(tmp);
	return ret;
}

/* Whether the two trees (or failures) are the same: return, reason, every
 * image (ph_image_equal), group and secret, the count left out, and the
 * warning's text (the log line without its time stamp). */
static bool same_tree(const cJSON *data, const char *text, size_t len)
{
	struct ph_tree a, b;
	struct ph_err ea = {0}, eb = {0};
	char la[2048], lb[2048];
	int ra = logged(data, NULL, 0, &a, &ea, la, sizeof(la));
	int rb = logged(NULL, text, len, &b, &eb, lb, sizeof(lb));
	const char *wa = strstr(la, "left out"), *wb = strstr(lb, "left out");
	bool same = ra == rb && (ra == 0 || strcmp(ea.msg, eb.msg) == 0) &&
	            a.nimages == b.nimages && a.ngroups == b.ngroups && a.nsecrets == b.nsecrets &&
	            a.nskipped == b.nskipped && str_eq(wa, wb);

	for (size_t i = 0; same && i < a.nimages; i++)
		same = ph_image_equal(a.images[i], b.images[i]);
	for (size_t i = 0; same && i < a.ngroups; i++)
		same = str_eq(a.groups[i].id, b.groups[i].id) &&
		       str_eq(a.groups[i].name, b.groups[i].name) &&
		       str_eq(a.groups[i].display_name, b.groups[i].display_name);
	for (size_t i = 0; same && i < a.nsecrets; i++)
		same = str_eq(a.secrets[i].id, b.secrets[i].id) &&
		       str_eq(a.secrets[i].name, b.secrets[i].name) &&
		       str_eq(a.secrets[i].type, b.secrets[i].type);
	if (!same)
		fprintf(stderr,
		        "streaming decode differs on %.300s\n cJSON: %d %s %zu images %zu skipped "
		        "%s\n stream: %d %s %zu images %zu skipped %s\n",
		        text, ra, ra ? ea.msg : "", a.nimages, a.nskipped, wa ? wa : "", rb,
		        rb ? eb.msg : "", b.nimages, b.nskipped, wb ? wb : "");
	ph_tree_free(&a);
	ph_tree_free(&b);
	return same;
}

static bool same_tree_text(const char *text)
{
	cJSON *data = cJSON_Parse(text);
	bool same = data && same_tree(data, text, strlen(text));

	cJSON_Delete(data);
	return same;
}

/* The same data as a text (read back by cJSON too: a replaced item loses
 * its key in memory, which no parsed answer can do). */
static bool same_tree_json(const cJSON *data)
{
	char *text = cJSON_PrintUnformatted(data);
	bool same = text && same_tree_text(text);

	free(text);
	return same;
}

/* Every node of `json` replaced by every kind of value: decode must answer
 * 0 or -EPROTO and leak nothing (ASan checks the latter). */
static int count_nodes(const cJSON *n)
{
	int k = 1;

	for (const cJSON *c = n->child; c; c = c->next)
		k += count_nodes(c);
	return k;
}

static cJSON *nth_node(cJSON *n, int *k)
{
	if ((*k)-- == 0)
		return n;
	for (cJSON *c = n->child; c; c = c->next) {
		cJSON *r = nth_node(c, k);

		if (r)
			return r;
	}
	return NULL;
}

static cJSON *parent_of(cJSON *root, const cJSON *node)
{
	for (cJSON *c = root->child; c; c = c->next) {
		cJSON *p;

		if (c == node)
			return root;
		p = parent_of(c, node);
		if (p)
			return p;
	}
	return NULL;
}

static void mutate_all(const char *json, bool tree)
{
	static const char *const variants[] = {"null",      "true", "false",  "0",   "\"\"",
	                                       "\"s\"",     "[]",   "{}",     "[1]", "[null]",
	                                       "{\"a\":1}", "[{}]", "[\"x\"]"};
	cJSON *orig = cJSON_Parse(json);
	int n = orig ? count_nodes(orig) : 0, bad = 0, runs = 0, differ = 0;

	for (int i = 1; i < n; i++) {
		for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
			cJSON *copy = cJSON_Duplicate(orig, true);
			int k = i;
			cJSON *node = nth_node(copy, &k);
			cJSON *parent = parent_of(copy, node);
			cJSON *repl = cJSON_Parse(variants[v]);
			struct ph_err err;
			int r;

			cJSON_ReplaceItemViaPointer(parent, node, repl);
			if (tree) {
				struct ph_tree t;

				r = ph_decode_tree(copy, &t, &err);
				ph_tree_free(&t);
				differ += !same_tree_json(copy);
			} else {
				struct ph_image *img = NULL;

				r = ph_decode_image(copy, &img, &err);
				ph_image_free(img);
			}
			if (r != 0 && r != -EPROTO)
				bad++;
			runs++;
			cJSON_Delete(copy);
		}
	}
	CHECK(runs > 100);
	CHECK_INT(bad, 0);
	CHECK_INT(differ, 0); /* the streaming decoder agrees on every one */
	cJSON_Delete(orig);
}

static void test_decode_fuzz(void)
{
	char tree[4096];

	mutate_all(CUSTOM, false);
	mutate_all(BASE_NOTEBOOK, false);
	snprintf(tree, sizeof(tree),
	         "{\"images\":[%s,%s],\"groups\":[{\"id\":\"g1\",\"name\":\"n\","
	         "\"displayName\":null}],\"secrets\":[{\"id\":\"image-r\",\"name\":\"r\","
	         "\"type\":\"kubernetes\"}]}",
	         TF2, CUSTOM);
	mutate_all(tree, true);
}

static void test_decode_tree(void)
{
	char json[4096];
	struct ph_tree t;
	struct ph_err err;
	cJSON *data;

	snprintf(json, sizeof(json),
	         "{\"images\":[%s,null,%s],\"groups\":[{\"id\":\"71ac1e32\",\"name\":"
	         "\"example-group-1\",\"displayName\":\"Example Group 1\"},{\"id\":\"ccdd52b8\","
	         "\"name\":\"phusers\",\"displayName\":\"primehub users\"}],\"secrets\":[{\"id\":"
	         "\"image-my-image-registry\",\"name\":\"my-image-registry\",\"type\":"
	         "\"kubernetes\"},{\"id\":\"gitsync-secret-dataset-secret\",\"name\":"
	         "\"dataset-secret\",\"type\":\"opaque\"}]}",
	         TF2, BASE_NOTEBOOK);
	data = cJSON_Parse(json);
	CHECK_INT(ph_decode_tree(data, &t, &err), 0);
	CHECK_INT(t.nimages, 2);
	CHECK_STR(t.images[0]->id, "tf-2");
	CHECK_STR(t.images[1]->id, "base-notebook");
	CHECK_INT(t.ngroups, 2);
	CHECK_STR(t.groups[1].name, "phusers");
	CHECK_INT(t.nsecrets, 1); /* opaque secrets are not pull secrets */
	CHECK_STR(t.secrets[0].id, "image-my-image-registry");
	CHECK_STR(t.secrets[0].type, "kubernetes");
	ph_tree_free(&t);
	CHECK(t.images == NULL && t.nimages == 0);
	ph_tree_free(&t); /* twice is harmless */
	cJSON_Delete(data);

	/* Empty lists are a valid, empty tree. */
	data = cJSON_Parse("{\"images\":[],\"groups\":[],\"secrets\":[]}");
	CHECK_INT(ph_decode_tree(data, &t, &err), 0);
	CHECK_INT(t.nimages + t.ngroups + t.nsecrets, 0);
	ph_tree_free(&t);
	cJSON_Delete(data);

	/* A missing list is not "no groups": it is the wrong answer. */
	data = cJSON_Parse("{\"images\":[],\"groups\":null,\"secrets\":[]}");
	CHECK_INT(ph_decode_tree(data, &t, &err), -EPROTO);
	CHECK_CONTAINS(err.msg, "groups is not a list");
	CHECK(t.images == NULL);
	cJSON_Delete(data);

	/* A malformed image is skipped (with a warning naming its position):
	 * one bad entry must not hide every other image. */
	snprintf(json, sizeof(json),
	         "{\"images\":[{\"id\":\"b\",\"name\":\"b\",\"type\":[]},%s,{\"id\":7},"
	         "\"text\"],\"groups\":[],\"secrets\":[]}",
	         TF2);
	data = cJSON_Parse(json);
	CHECK_INT(ph_decode_tree(data, &t, &err), 0);
	CHECK_INT(t.nimages, 1);
	CHECK_STR(t.nimages ? t.images[0]->id : NULL, "tf-2");
	ph_tree_free(&t);
	cJSON_Delete(data);

	CHECK_INT(ph_decode_tree(NULL, &t, &err), -EPROTO);
}

/* Run ph_decode_tree with stderr (the log) captured into log, logsz. */
static int decode_tree_logged(const cJSON *data, struct ph_tree *t, struct ph_err *err, char *log,
                              size_t logsz)
{
	FILE *tmp = tmpfile();
	int saved = dup(2), ret;
	size_t n;

	fflush(stderr);
	dup2(fileno(tmp), 2);
	ret = ph_decode_tree(data, t, err);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(log, 1, logsz - 1, tmp);
	log[n] = '\0';
	fclose(tmp);
	return ret;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Malformed groups and secrets are left out like images, one warning line
 * for the whole answer; odd names (a '/', control characters, invalid
 * UTF-8) are kept as bytes, because the layers above need them for their
 * conflict checks and decide themselves what to show. */
static void test_decode_tree_tolerant(void)
{
	static const char json[] =
	    "{\"images\":[{\"id\":\"a\",\"name\":\"a\"},{\"name\":\"no-id\"},"
	    "{\"id\":\"bad\xff\\u0001\",\"name\":\"bad\xff\\u0001\"},"
	    "{\"id\":\"c\",\"name\":\"c\",\"groups\":[{\"id\":1}]}],"
	    "\"groups\":[{\"id\":\"g1\",\"name\":\"a/b\"},{\"id\":\"g2\"},{\"id\":\"g3\","
	    "\"name\":\"x\\ny\\u001b[31m\"},7,{\"id\":\"g4\",\"name\":\"ok\",\"displayName\":"
	    "[]}],"
	    "\"secrets\":[{\"name\":\"no-id\",\"type\":\"kubernetes\"},{\"id\":\"s1\","
	    "\"name\":\"s1\",\"type\":\"kubernetes\"},{\"id\":\"s2\",\"type\":5}]}";
	char log[4096];
	struct ph_tree t;
	struct ph_err err = {0};
	cJSON *data = cJSON_Parse(json);

	CHECK(data != NULL);
	CHECK(same_tree_text(json));
	CHECK_INT(decode_tree_logged(data, &t, &err, log, sizeof(log)), 0);
	/* Images: a, the invalid-UTF-8 one; "no-id" and c (a group of c has
	 * no string id) are left out. */
	CHECK_INT(t.nimages, 2);
	CHECK_STR(t.nimages > 0 ? t.images[0]->id : NULL, "a");
	CHECK_STR(t.nimages > 1 ? t.images[1]->name : NULL, "bad\xff\x01");
	/* Groups: "a/b" and the one with control characters are kept. */
	CHECK_INT(t.ngroups, 2);
	CHECK_STR(t.ngroups > 0 ? t.groups[0].name : NULL, "a/b");
	CHECK_STR(t.ngroups > 1 ? t.groups[1].name : NULL, "x\ny\x1b[31m");
	CHECK_INT(t.nsecrets, 1);
	CHECK_STR(t.nsecrets ? t.secrets[0].id : NULL, "s1");
	CHECK_INT(t.nskipped, 2 + 3 + 2);
	/* One line, with the count, each kind, and the first reason. */
	CHECK_INT(count_lines(log), 1);
	CHECK_CONTAINS(log, "left out 7 malformed entries");
	CHECK_CONTAINS(log, "(2 images, 3 groups, 2 secrets)");
	CHECK_CONTAINS(log, "images[1].id is missing");
	ph_tree_free(&t);
	cJSON_Delete(data);

	/* A clean answer logs nothing. */
	data = cJSON_Parse("{\"images\":[{\"id\":\"a\",\"name\":\"a\"}],\"groups\":[],"
	                   "\"secrets\":[]}");
	CHECK_INT(decode_tree_logged(data, &t, &err, log, sizeof(log)), 0);
	CHECK_INT(t.nskipped, 0);
	CHECK_STR(log, "");
	ph_tree_free(&t);
	cJSON_Delete(data);

	/* A lone image (a mutation's answer) is still refused, not skipped. */
	data = cJSON_Parse("{\"id\":\"a\",\"name\":\"a\",\"groups\":[{\"name\":\"g\"}]}");
	{
		struct ph_image *img = NULL;

		CHECK_INT(ph_decode_image(data, &img, &err), -EPROTO);
		CHECK_CONTAINS(err.msg, "groups[0].id is missing");
		CHECK(img == NULL);
	}
	cJSON_Delete(data);
}

/* The streaming decoder (straight from the text, as the answer arrives)
 * gives what ph_decode_tree gives: keys in any order, duplicates (the
 * first wins), nulls, malformed entries and their warning, wrong lists. */
static void test_stream_matches(void)
{
	static const char *const texts[] = {
	    "{\"images\":[],\"groups\":[],\"secrets\":[]}",
	    "{\"secrets\":[],\"groups\":[],\"images\":[]}",
	    "{\"images\":[],\"groups\":null,\"secrets\":[]}",
	    "{\"images\":[],\"secrets\":[]}",
	    "{\"images\":{},\"groups\":7,\"secrets\":\"x\"}",
	    "{\"groups\":[],\"secrets\":[],\"images\":[{\"id\":\"a\",\"name\":\"a\"}],\"x\":[[{}]]"
	    "}",
	    "{\"images\":[{\"id\":\"a\",\"name\":\"a\"}],\"images\":7,\"groups\":[],\"secrets\":[]"
	    "}",
	    "{\"images\":[{\"name\":\"b\",\"id\":\"a\",\"id\":\"c\",\"global\":true,\"global\":3}],"
	    "\"groups\":[],\"secrets\":[]}",
	    "{\"images\":[{\"id\":\"a\",\"name\":null}],\"groups\":[],\"secrets\":[]}",
	    "{\"images\":[{\"jobStatus\":{\"phase\":3},\"type\":[],\"name\":\"a\"}],\"groups\":[{}]"
	    ","
	    "\"secrets\":[{\"id\":\"s\",\"type\":\"kubernetes\"},{\"id\":\"t\"}]}",
	    "{\"images\":[{\"id\":\"a\",\"name\":\"a\",\"imageSpec\":{\"packages\":{\"pip\":[\"x\","
	    "null,\"y\"],\"apt\":null,\"conda\":[1]}}},{\"id\":\"b\",\"name\":\"b\",\"imageSpec\":"
	    "{\"packages\":{\"pip\":[\"x\",null,\"y\"],\"apt\":null},\"cancel\":true,\"cancel\":1},"
	    "\"jobStatus\":{\"image\":\"i\",\"phase\":null}}],\"groups\":[],\"secrets\":[]}",
	    "{\"images\":[{\"id\":\"a\",\"name\":\"a\",\"imageSpec\":{\"packages\":[]}},{\"id\":"
	    "\"b\",\"name\":\"b\",\"imageSpec\":[],\"jobStatus\":[]},{\"id\":\"c\",\"name\":\"c\","
	    "\"groups\":[null,{\"name\":\"n\",\"id\":\"g\"},{\"id\":\"h\"}]}],\"groups\":[null,[],"
	    "{\"id\":\"g\",\"name\":\"n\",\"displayName\":{}}],\"secrets\":[null,1,{}]}",
	    "{\"images\":[{\"id\":\"a\",\"name\":\"a\",\"groups\":[{\"id\":\"g\",\"name\":\"n\","
	    "\"displayName\":\"d\"}],\"imageSpec\":null,\"jobStatus\":{}}],\"groups\":[],"
	    "\"secrets\":[]}",
	    "{\"images\":[{\"id\":\"x\",\"name\":\"x\",\"description\":7,\"url\":[]}],"
	    "\"groups\":[{\"id\":5,\"name\":6}],\"secrets\":[{\"id\":\"z\",\"name\":[]}]}",
	    "[]",
	    "null",
	};
	char json[4096];

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		CHECK(same_tree_text(texts[i]));
	snprintf(json, sizeof(json),
	         "{\"secrets\":[{\"type\":\"kubernetes\",\"name\":\"r\",\"id\":\"image-r\"}],"
	         "\"images\":[%s,null,%s,%s],\"groups\":[{\"id\":\"g1\",\"name\":\"n\"}]}",
	         TF2, BASE_NOTEBOOK, CUSTOM);
	CHECK(same_tree_text(json));
	/* Not JSON at all, or not strict JSON: the streaming decoder refuses it
	 * with the place. */
	{
		struct ph_tree t;
		struct ph_err err = {0};

		CHECK_INT(ph_decode_tree_text("{\"images\":[01]}", 15, &t, &err), -EPROTO);
		CHECK_CONTAINS(err.msg, "invalid JSON at byte 12");
		CHECK(t.images == NULL && t.nimages == 0);
	}
}

/* 10,000 images (about 6 MB of JSON here): decoding must stay linear. */
static void test_decode_tree_big(void)
{
	const size_t n = 10000;
	size_t cap = n * (sizeof(CUSTOM) + 64) + 256, len = 0;
	char *json = malloc(cap);
	struct ph_tree t;
	struct ph_err err;
	struct timespec t0, t1;
	cJSON *data;
	double secs;

	len += (size_t)sprintf(json + len, "{\"images\":[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(
		    json + len, "%s{\"id\":\"img-%zu\",\"name\":\"img-%zu\"%s", i ? "," : "", i, i,
		    strchr(CUSTOM + 1, ',') + strlen(",\"name\":\"my-custom-image\""));
	sprintf(json + len, "],\"groups\":[],\"secrets\":[]}");

	clock_gettime(CLOCK_MONOTONIC, &t0);
	data = cJSON_Parse(json);
	CHECK(data != NULL);
	CHECK_INT(ph_decode_tree(data, &t, &err), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK_INT(t.nimages, n);
	CHECK_STR(t.nimages == n ? t.images[n - 1]->id : NULL, "img-9999");
	CHECK_STR(t.nimages == n ? t.images[n - 1]->image_spec->pip.items[0] : NULL, "pytest");
	printf("parse + decode of %zu images (%zu bytes): %.3f s\n", n, strlen(json), secs);
	CHECK(secs < 10.0);
	{
		struct ph_tree st;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		CHECK_INT(ph_decode_tree_text(json, strlen(json), &st, &err), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("streaming decode of the same: %.3f s\n",
		       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
		CHECK_INT(st.nimages, n);
		for (size_t i = 0; i < n && i < st.nimages; i++)
			if (!ph_image_equal(t.images[i], st.images[i])) {
				CHECK(!"streaming decode differs");
				break;
			}
		ph_tree_free(&st);
	}
	ph_tree_free(&t);
	cJSON_Delete(data);
	free(json);
}

static char *encode_text(const struct ph_image_input *in, bool for_create)
{
	cJSON *j = ph_encode_image_input(in, for_create);
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;

	cJSON_Delete(j);
	return s;
}

static void test_encode_input(void)
{
	struct ph_image_input in = {0};
	char *s;

	/* Only keys whose bit is set; a set NULL string is null. */
	in.set = PH_IN_DISPLAY_NAME | PH_IN_USE_IMAGE_PULL_SECRET | PH_IN_GLOBAL | PH_IN_URL;
	in.display_name = strdup("TF 2");
	in.description = strdup("not sent: its bit is not set");
	in.url = NULL;
	in.use_image_pull_secret = NULL;
	in.global = false;
	s = encode_text(&in, false);
	CHECK_STR(s, "{\"displayName\":\"TF 2\",\"url\":null,\"useImagePullSecret\":null,"
	             "\"global\":false}");
	free(s);

	/* "" is sent as "". */
	free(in.use_image_pull_secret);
	in.use_image_pull_secret = strdup("");
	in.set = PH_IN_USE_IMAGE_PULL_SECRET;
	s = encode_text(&in, false);
	CHECK_STR(s, "{\"useImagePullSecret\":\"\"}");
	free(s);

	/* Groups: connect and disconnect on update... */
	in.set = 0;
	ph_strlist_append(&in.connect, "g1");
	ph_strlist_append(&in.connect, "g2");
	ph_strlist_append(&in.disconnect, "g3");
	s = encode_text(&in, false);
	CHECK_STR(s, "{\"groups\":{\"connect\":[{\"id\":\"g1\"},{\"id\":\"g2\"}],"
	             "\"disconnect\":[{\"id\":\"g3\"}]}}");
	free(s);
	/* ...create has no disconnect (GroupCreateManyInput)... */
	s = encode_text(&in, true);
	CHECK_STR(s, "{\"groups\":{\"connect\":[{\"id\":\"g1\"},{\"id\":\"g2\"}]}}");
	free(s);
	/* ...and empty lists are not sent. */
	ph_strlist_free(&in.connect);
	s = encode_text(&in, false);
	CHECK_STR(s, "{\"groups\":{\"disconnect\":[{\"id\":\"g3\"}]}}");
	free(s);
	s = encode_text(&in, true);
	CHECK_STR(s, "{}");
	free(s);
	ph_strlist_free(&in.disconnect);
	ph_image_input_clear(&in);

	/* Create with imageSpec; update never sends it (ImageUpdateInput has
	 * no such field). */
	in.set = PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL | PH_IN_IMAGE_SPEC;
	in.name = strdup("my-custom-image");
	in.type = strdup("both");
	in.global = true;
	in.image_spec = calloc(1, sizeof(*in.image_spec));
	in.image_spec->base_image = strdup("jupyter/base-notebook");
	in.image_spec->has_packages = true;
	ph_strlist_append(&in.image_spec->pip, "pytest");
	in.image_spec->update_time = strdup("not sent: server-set");
	s = encode_text(&in, true);
	CHECK_STR(s, "{\"name\":\"my-custom-image\",\"type\":\"both\",\"global\":true,"
	             "\"imageSpec\":{\"baseImage\":\"jupyter/base-notebook\",\"pullSecret\":null,"
	             "\"packages\":{\"apt\":[],\"pip\":[\"pytest\"],\"conda\":[]},"
	             "\"cancel\":false}}");
	free(s);
	s = encode_text(&in, false);
	CHECK_STR(s, "{\"name\":\"my-custom-image\",\"type\":\"both\",\"global\":true}");
	free(s);
	/* The bit with a NULL spec: explicit null. */
	ph_build_spec_free(in.image_spec);
	in.image_spec = NULL;
	s = encode_text(&in, true);
	CHECK_CONTAINS(s, "\"imageSpec\":null");
	free(s);
	ph_image_input_clear(&in);
}

static void test_encode_build_spec(void)
{
	struct ph_build_spec spec = {0};
	cJSON *j;
	char *s;

	spec.base_image = "jupyter/base-notebook";
	spec.pull_secret = "image-my-image-registry";
	j = ph_encode_build_spec(&spec);
	s = cJSON_PrintUnformatted(j);
	CHECK_STR(s, "{\"baseImage\":\"jupyter/base-notebook\",\"pullSecret\":"
	             "\"image-my-image-registry\",\"packages\":null,\"cancel\":false}");
	free(s);
	cJSON_Delete(j);

	j = ph_encode_build_spec(NULL);
	CHECK(cJSON_IsNull(j));
	cJSON_Delete(j);
}

int main(void)
{
	test_decode_samples();
	test_decode_nulls();
	test_decode_malformed();
	test_decode_tree_tolerant();
	test_decode_fuzz();
	test_decode_tree();
	test_stream_matches();
	test_decode_tree_big();
	test_encode_input();
	test_encode_build_spec();
	UNIT_DONE();
}
