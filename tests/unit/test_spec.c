/*
 * test_spec.c - the spec layer: render (byte for byte), status, template,
 * update planning (rules, conflicts, PrimeHub quirk work-arounds) and create
 * planning.  Sample data is the official SDK's documented examples.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/json_text.h"
#include "primehubfs/spec.h"
#include "unit.h"

/* ------------------------------------------------------------ fixtures */

static char *xstrdup(const char *s)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		abort();
	return d;
}

static struct ph_image *image_new(const char *name, const char *display, const char *desc,
                                  const char *type, const char *url, const char *gpu, bool global,
                                  const char *pull_secret)
{
	struct ph_image *img = calloc(1, sizeof(*img));
	char endpoint[256];

	if (!img)
		abort();
	snprintf(endpoint, sizeof(endpoint), "https://example.primehub.io/api/logs/images/%s/job",
	         name);
	img->id = xstrdup(name);
	img->name = xstrdup(name);
	img->display_name = xstrdup(display);
	img->description = xstrdup(desc);
	img->type = xstrdup(type);
	img->url = xstrdup(url);
	img->url_for_gpu = xstrdup(gpu);
	img->global = global;
	img->use_image_pull_secret = xstrdup(pull_secret);
	img->is_ready = url && *url;
	img->log_endpoint = xstrdup(endpoint);
	return img;
}

static void add_group(struct ph_image *img, const char *id, const char *name, const char *display)
{
	struct ph_group *g = realloc(img->groups, (img->ngroups + 1) * sizeof(*g));

	if (!g)
		abort();
	img->groups = g;
	g[img->ngroups].id = xstrdup(id);
	g[img->ngroups].name = xstrdup(name);
	g[img->ngroups].display_name = xstrdup(display);
	img->ngroups++;
}

#define DS "infuseai/docker-stacks:"

static struct ph_image *sample(int i)
{
	struct ph_image *img = NULL;

	switch (i) {
	case 0:
		img = image_new("base-notebook", "base-notebook", "base notebook", "both",
		                DS "base-notebook-63fdf50a", DS "base-notebook-63fdf50a-gpu", false,
		                NULL);
		add_group(img, "71ac1e32-65fa-4e8e-a735-ba282e3149b1", "example-group-1",
		          "Example Group 1");
		add_group(img, "0fdaea59-705a-4546-8d13-2d52511342b0", "example-group-2",
		          "Example Group 2");
		break;
	case 1:
		img = image_new("pytorch-1", "PyTorch 1.8.0 (Python 3.7)",
		                "PyTorch 1.8.0 (Python 3.7)", "both",
		                DS "pytorch-notebook-v1-8-0-63fdf50a",
		                DS "pytorch-notebook-v1-8-0-63fdf50a-gpu-cuda-11", true, NULL);
		break;
	case 2:
		img = image_new("tf-1", "TensorFlow 1.15.4 (Python 3.7)",
		                "TensorFlow 1.15.4 (Python 3.7)", "both",
		                DS "tensorflow-notebook-v1-15-4-63fdf50a",
		                DS "tensorflow-notebook-v1-15-4-63fdf50a-gpu-cuda-10", true, NULL);
		break;
	default:
		img = image_new("tf-2", "TensorFlow 2.5.0 (Python 3.7)",
		                "TensorFlow 2.5.0 (Python 3.7)", "both",
		                DS "tensorflow-notebook-v2-5-0-63fdf50a",
		                DS "tensorflow-notebook-v2-5-0-63fdf50a-gpu-cuda-11", true, NULL);
		break;
	}
	return img;
}

/* The screenplay's my-custom-image as it reads back (the SDK's screenplay notebook). */
static struct ph_image *custom_image(void)
{
	struct ph_image *img =
	    image_new("my-custom-image", "my-custom-image", NULL, "both", NULL, NULL, true, "");
	struct ph_build_spec *bs = calloc(1, sizeof(*bs));

	if (!bs)
		abort();
	bs->base_image = xstrdup("jupyter/base-notebook");
	bs->has_packages = true;
	ph_strlist_append(&bs->pip, "pytest");
	bs->update_time = xstrdup("2023-04-19T02:53:41.000Z");
	img->image_spec = bs;
	return img;
}

static const struct ph_secret secrets[] = {
    {(char *)"image-my-image-registry", (char *)"my-image-registry", (char *)"kubernetes"},
    {(char *)"gitsync-secret-dataset-secret", (char *)"dataset-secret", (char *)"opaque"},
};

static struct spec_context ctx_for(const char *dir)
{
	struct spec_context c = {.dir_name = dir, .secrets = secrets, .nsecrets = 2};

	return c;
}

/* s with the first `from` replaced by `to` (which must be there). */
static char *edit(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
	char *out = malloc(n);

	if (!at || !out) {
		fprintf(stderr, "edit: \"%s\" not found\n", from);
		abort();
	}
	memcpy(out, s, (size_t)(at - s));
	strcpy(out + (at - s), to);
	strcat(out, at + strlen(from));
	return out;
}

/* Plan a save of `text` over what `opened` rendered, against `current`. */
static int plan(const struct ph_image *opened, const char *text, const struct ph_image *current,
                struct spec_update *u, struct ph_err *err)
{
	struct spec_context ctx = ctx_for(current->name);
	size_t blen;
	char *base = spec_render(opened, &blen);
	int r;

	ph_err_clear(err);
	r = spec_plan_update(base, blen, text, strlen(text), current, &ctx, u, err);
	free(base);
	return r;
}

/* Render `img`, apply one edit, plan it against `img` itself. */
static int plan_edit(const struct ph_image *img, const char *from, const char *to,
                     struct spec_update *u, struct ph_err *err)
{
	char *base = spec_render(img, NULL);
	char *text = edit(base, from, to);
	int r = plan(img, text, img, u, err);

	free(base);
	free(text);
	return r;
}

/* ------------------------------------------------------------- render */

static const char *const sample_json[] = {
    "{\n"
    "  \"name\": \"base-notebook\",\n"
    "  \"displayName\": \"base-notebook\",\n"
    "  \"description\": \"base notebook\",\n"
    "  \"type\": \"both\",\n"
    "  \"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\",\n"
    "  \"urlForGpu\": \"infuseai/docker-stacks:base-notebook-63fdf50a-gpu\",\n"
    "  \"global\": false,\n"
    "  \"useImagePullSecret\": null\n"
    "}\n",
    "{\n"
    "  \"name\": \"pytorch-1\",\n"
    "  \"displayName\": \"PyTorch 1.8.0 (Python 3.7)\",\n"
    "  \"description\": \"PyTorch 1.8.0 (Python 3.7)\",\n"
    "  \"type\": \"both\",\n"
    "  \"url\": \"infuseai/docker-stacks:pytorch-notebook-v1-8-0-63fdf50a\",\n"
    "  \"urlForGpu\": \"infuseai/docker-stacks:pytorch-notebook-v1-8-0-63fdf50a-gpu-cuda-11\",\n"
    "  \"global\": true,\n"
    "  \"useImagePullSecret\": null\n"
    "}\n",
    "{\n"
    "  \"name\": \"tf-1\",\n"
    "  \"displayName\": \"TensorFlow 1.15.4 (Python 3.7)\",\n"
    "  \"description\": \"TensorFlow 1.15.4 (Python 3.7)\",\n"
    "  \"type\": \"both\",\n"
    "  \"url\": \"infuseai/docker-stacks:tensorflow-notebook-v1-15-4-63fdf50a\",\n"
    "  \"urlForGpu\": "
    "\"infuseai/docker-stacks:tensorflow-notebook-v1-15-4-63fdf50a-gpu-cuda-10\",\n"
    "  \"global\": true,\n"
    "  \"useImagePullSecret\": null\n"
    "}\n",
    "{\n"
    "  \"name\": \"tf-2\",\n"
    "  \"displayName\": \"TensorFlow 2.5.0 (Python 3.7)\",\n"
    "  \"description\": \"TensorFlow 2.5.0 (Python 3.7)\",\n"
    "  \"type\": \"both\",\n"
    "  \"url\": \"infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a\",\n"
    "  \"urlForGpu\": \"infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a-gpu-cuda-11\",\n"
    "  \"global\": true,\n"
    "  \"useImagePullSecret\": null\n"
    "}\n",
};

static const char custom_json[] = "{\n"
                                  "  \"name\": \"my-custom-image\",\n"
                                  "  \"displayName\": \"my-custom-image\",\n"
                                  "  \"description\": null,\n"
                                  "  \"type\": \"both\",\n"
                                  "  \"global\": true,\n"
                                  "  \"useImagePullSecret\": null,\n"
                                  "  \"imageSpec\": {\n"
                                  "    \"baseImage\": \"jupyter/base-notebook\",\n"
                                  "    \"pullSecret\": null,\n"
                                  "    \"packages\": {\n"
                                  "      \"apt\": [],\n"
                                  "      \"pip\": [\n"
                                  "        \"pytest\"\n"
                                  "      ],\n"
                                  "      \"conda\": []\n"
                                  "    },\n"
                                  "    \"cancel\": false\n"
                                  "  }\n"
                                  "}\n";

static void test_render_samples(void)
{
	for (int i = 0; i < 4; i++) {
		struct ph_image *img = sample(i);
		size_t len = 0, len2 = 0;
		char *a = spec_render(img, &len), *b = spec_render(img, &len2);

		CHECK_STR(a, sample_json[i]);
		CHECK_INT(len, strlen(sample_json[i]));
		CHECK(b && len2 == len && memcmp(a, b, len) == 0); /* stable */
		free(a);
		free(b);
		ph_image_free(img);
	}
}

static void test_render_custom(void)
{
	struct ph_image *img = custom_image();
	char *s = spec_render(img, NULL);

	CHECK_STR(s, custom_json);
	free(s);
	/* packages null on the server: three empty lists, still creatable by the CLI */
	ph_strlist_free(&img->image_spec->pip);
	img->image_spec->has_packages = false;
	s = spec_render(img, NULL);
	CHECK_CONTAINS(s, "    \"packages\": {\n      \"apt\": [],\n      \"pip\": [],\n"
	                  "      \"conda\": []\n    },\n");
	free(s);
	/* url/urlForGpu of a built custom image are in status.json only */
	img->url = xstrdup("registry.example.com/built:1");
	s = spec_render(img, NULL);
	CHECK(s && !strstr(s, "\"url\""));
	free(s);
	ph_image_free(img);
}

static void test_render_escapes(void)
{
	struct ph_image *img = sample(0);
	char *s;

	free(img->description);
	img->description = xstrdup("q\"b\\s\nt\t\x01\x7f\xe6\x97\xa5 \xff!");
	free(img->display_name);
	img->display_name = NULL;
	img->group_name = xstrdup("some-group");
	s = spec_render(img, NULL);
	CHECK_CONTAINS(s, "  \"description\": \"q\\\"b\\\\s\\nt\\t\\u0001\x7f\xe6\x97\xa5 "
	                  "\xef\xbf\xbd!\",\n");
	CHECK_CONTAINS(s, "  \"displayName\": null,\n");
	CHECK(s && !strstr(s, "groupName"));
	free(s);
	ph_image_free(img);
}

static void test_render_status(void)
{
	struct ph_image *img = sample(0), *c = custom_image();
	char *s = spec_render_status(img, NULL);

	CHECK_STR(s, "{\n"
	             "  \"id\": \"base-notebook\",\n"
	             "  \"isReady\": true,\n"
	             "  \"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\",\n"
	             "  \"urlForGpu\": \"infuseai/docker-stacks:base-notebook-63fdf50a-gpu\",\n"
	             "  \"customBuild\": false,\n"
	             "  \"buildPhase\": null,\n"
	             "  \"buildImage\": null,\n"
	             "  \"updateTime\": null,\n"
	             "  \"cancelRequested\": false,\n"
	             "  \"groups\": [\n"
	             "    {\n"
	             "      \"id\": \"71ac1e32-65fa-4e8e-a735-ba282e3149b1\",\n"
	             "      \"name\": \"example-group-1\",\n"
	             "      \"displayName\": \"Example Group 1\"\n"
	             "    },\n"
	             "    {\n"
	             "      \"id\": \"0fdaea59-705a-4546-8d13-2d52511342b0\",\n"
	             "      \"name\": \"example-group-2\",\n"
	             "      \"displayName\": \"Example Group 2\"\n"
	             "    }\n"
	             "  ]\n"
	             "}\n");
	free(s);
	c->has_job_status = true;
	c->job_phase = xstrdup("Running");
	c->image_spec->cancel = true;
	s = spec_render_status(c, NULL);
	CHECK_CONTAINS(s, "  \"isReady\": false,\n  \"url\": null,\n  \"urlForGpu\": null,\n"
	                  "  \"customBuild\": true,\n  \"buildPhase\": \"Running\",\n"
	                  "  \"buildImage\": null,\n"
	                  "  \"updateTime\": \"2023-04-19T02:53:41.000Z\",\n"
	                  "  \"cancelRequested\": true,\n  \"groups\": []\n}\n");
	free(s);
	ph_image_free(img);
	ph_image_free(c);
}

static void test_render_template(void)
{
	size_t len = 0;
	char *s = spec_render_template("my-new-image", &len);

	CHECK_STR(s, "{\n"
	             "  \"name\": \"my-new-image\",\n"
	             "  \"displayName\": \"my-new-image\",\n"
	             "  \"description\": null,\n"
	             "  \"type\": \"both\",\n"
	             "  \"url\": null,\n"
	             "  \"urlForGpu\": null,\n"
	             "  \"global\": false,\n"
	             "  \"useImagePullSecret\": null\n"
	             "}\n");
	CHECK_INT(len, s ? strlen(s) : 0);
	free(s);
	CHECK(spec_render_template(NULL, NULL) == NULL);
}

/* -------------------------------------------------------- update: basics */

static void test_roundtrip_unchanged(void)
{
	struct ph_image *imgs[] = {sample(0), sample(1), sample(2), sample(3), custom_image()};

	for (size_t i = 0; i < 5; i++) {
		struct spec_update u;
		struct ph_err err;
		char *base = spec_render(imgs[i], NULL);
		char *t;

		CHECK_INT(plan(imgs[i], base, imgs[i], &u, &err), 0);
		CHECK(spec_update_empty(&u));
		CHECK_INT(u.changed, 0);
		spec_update_clear(&u);
		/* same content, other whitespace and key order: still nothing */
		t = edit(base, "{\n  \"name\"", "{ \"global\": false, \"name\"");
		free(base);
		base = t;
		t = edit(base, "\"global\": false, ", "");
		CHECK_INT(plan(imgs[i], t, imgs[i], &u, &err), 0);
		CHECK(spec_update_empty(&u));
		spec_update_clear(&u);
		free(t);
		free(base);
	}
	/* key order and layout fully rewritten */
	{
		struct spec_update u;
		struct ph_err err;
		const char *t = "{\"useImagePullSecret\":null,\"global\":false,"
		                "\"urlForGpu\":\"" DS "base-notebook-63fdf50a-gpu\",\"url\":\"" DS
		                "base-notebook-63fdf50a\",\"type\":\"both\",\"description\":\"base "
		                "notebook\",\"displayName\":\"base-notebook\"}";

		CHECK_INT(plan(imgs[0], t, imgs[0], &u, &err), 0);
		CHECK(spec_update_empty(&u));
		spec_update_clear(&u);
	}
	for (size_t i = 0; i < 5; i++)
		ph_image_free(imgs[i]);
}

static void test_simple_changes(void)
{
	struct ph_image *img = sample(1);
	struct spec_update u;
	struct ph_err err;

	CHECK_INT(plan_edit(img, "\"description\": \"PyTorch 1.8.0 (Python 3.7)\"",
	                    "\"description\": \"new text\"", &u, &err),
	          0);
	CHECK(!spec_update_empty(&u));
	CHECK_INT(u.changed, PH_IN_DESCRIPTION);
	CHECK_INT(u.input.set, PH_IN_DESCRIPTION); /* pull secret is null: nothing to re-send */
	CHECK_STR(u.input.description, "new text");
	CHECK(!u.rebuild && !u.cancel_build);
	spec_update_clear(&u);
	CHECK(spec_update_empty(&u));

	/* removed or null: cleared (sent as null) */
	CHECK_INT(
	    plan_edit(img, "  \"description\": \"PyTorch 1.8.0 (Python 3.7)\",\n", "", &u, &err),
	    0);
	CHECK_INT(u.input.set, PH_IN_DESCRIPTION);
	CHECK(u.input.description == NULL);
	spec_update_clear(&u);
	CHECK_INT(plan_edit(img, "\"displayName\": \"PyTorch 1.8.0 (Python 3.7)\"",
	                    "\"displayName\": null", &u, &err),
	          0);
	CHECK_INT(u.input.set, PH_IN_DISPLAY_NAME);
	CHECK(u.input.display_name == NULL);
	spec_update_clear(&u);

	/* global removed: false */
	CHECK_INT(plan_edit(img, "  \"global\": true,\n", "", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_GLOBAL);
	CHECK(!u.input.global);
	spec_update_clear(&u);
	CHECK_INT(plan_edit(img, "\"global\": true", "\"global\": null", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_GLOBAL);
	spec_update_clear(&u);

	/* name may be removed, or null */
	CHECK_INT(plan_edit(img, "  \"name\": \"pytorch-1\",\n", "", &u, &err), 0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);
	CHECK_INT(plan_edit(img, "\"name\": \"pytorch-1\"", "\"name\": null", &u, &err), 0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);
	ph_image_free(img);
}

/* ------------------------------------------------------ update: refusals */

struct refusal {
	const char *from, *to;
	int errnum;
	const char *field, *msg;
};

static const struct refusal plain_refusals[] = {
    /* shape */
    {"\"url\":", "\"urll\":", EINVAL, "urll", "unknown key \"urll\" (did you mean \"url\"?)"},
    {"\"url\":", "\"urll\":", EINVAL, "urll",
     "allowed keys: name, displayName, description, type, url, urlForGpu, global, "
     "useImagePullSecret, imageSpec"},
    {"\"global\": false", "\"global\": false, \"global\": true", EINVAL, "global",
     "duplicate key \"global\""},
    {"\"global\": false", "\"global\": \"yes\"", EINVAL, "global",
     "global must be true, false or null, not a string"},
    {"\"type\": \"both\"", "\"type\": 3", EINVAL, "type",
     "type must be a string or null, not a number"},
    {"\"description\": \"base notebook\"", "\"description\": [\"x\"]", EINVAL, "description",
     "description must be a string or null, not a list"},
    {"\"global\": false", "\"global\": false, \"isReady\": true", EINVAL, "isReady",
     "isReady is read-only (see status.json)"},
    {"\"global\": false", "\"global\": false, \"id\": \"base-notebook\"", EINVAL, "id",
     "id is read-only (see status.json)"},
    {"\"global\": false", "\"global\": false, \"groups\": []", EINVAL, "groups",
     "groups is read-only (see status.json)"},
    {"\"global\": false", "\"global\": false, \"groupName\": \"g\"", EINVAL, "groupName",
     "groupName cannot be set here"},
    {"\"global\": false", "\"global\": false, \"imageSpec\": 1", EINVAL, "imageSpec",
     "imageSpec must be an object"},
    /* values */
    {"\"name\": \"base-notebook\"", "\"name\": \"other\"", EINVAL, "name", "names cannot change"},
    {"\"name\": \"base-notebook\"", "\"name\": 7", EINVAL, "name", "name must be a string or null"},
    {"\"type\": \"both\"", "\"type\": \"gpuu\"", EINVAL, "type",
     "type should be one of ['cpu', 'gpu', 'both']"},
    {"\"type\": \"both\"", "\"type\": \"\"", EINVAL, "type",
     "type should be one of ['cpu', 'gpu', 'both']"},
    {"\"type\": \"both\"", "\"type\": null", EINVAL, "type", "type cannot be removed"},
    {"\"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\"", "\"url\": null", EINVAL, "url",
     "url cannot be removed; set another image reference"},
    {"  \"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\",\n", "", EINVAL, "url",
     "url cannot be removed"},
    {"\"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\"", "\"url\": \"\"", EINVAL, "url",
     "url cannot be removed"},
    {"\"url\": \"infuseai", "\"url\": \"InfuseAI", EINVAL, "url",
     "url: the repository path \"InfuseAI/docker-stacks\" must be lower case"},
    {"\"url\": \"infuseai", "\"url\": \"https://infuseai", EINVAL, "url",
     "url must not start with a scheme"},
    {"base-notebook-63fdf50a\",\n  \"urlForGpu", "base notebook\",\n  \"urlForGpu", EINVAL, "url",
     "url must not contain spaces"},
    {"63fdf50a-gpu\"", "63fdf50a-gpu:x:y\"", EINVAL, "urlForGpu", "urlForGpu: "},
    {"63fdf50a-gpu\"", "63fdf50a-gpu@sha256:abc\"", EINVAL, "urlForGpu",
     "write @sha256: followed by 64 lower-case hex digits"},
    {"\"urlForGpu\": \"infuseai/docker-stacks:base-notebook-63fdf50a-gpu\"", "\"urlForGpu\": null",
     EINVAL, "urlForGpu", "urlForGpu cannot be removed"},
    {"\"type\": \"both\"", "\"type\": \"cpu\"", EINVAL, "urlForGpu",
     "changing type to \"cpu\" makes PrimeHub set urlForGpu to the url"}, /* see quirks */
    {"\"type\": \"both\",\n  \"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\",\n  "
     "\"urlForGpu\": \"infuseai/docker-stacks:base-notebook-63fdf50a-gpu\"",
     "\"type\": \"cpu\",\n  \"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\",\n  "
     "\"urlForGpu\": \"infuseai/docker-stacks:other\"",
     EINVAL, "urlForGpu", "PrimeHub always sets urlForGpu to the url"},
    {"\"useImagePullSecret\": null", "\"useImagePullSecret\": \"nope\"", EINVAL,
     "useImagePullSecret",
     "useImagePullSecret \"nope\" is not an image pull secret; use \"\" or null for none, or "
     "one of: \"image-my-image-registry\""},
    {"\"useImagePullSecret\": null", "\"useImagePullSecret\": \"gitsync-secret-dataset-secret\"",
     EINVAL, "useImagePullSecret", "is not an image pull secret"},
    {"\"useImagePullSecret\": null", "\"useImagePullSecret\": 1", EINVAL, "useImagePullSecret",
     "must be a string or null"},
    /* imageSpec cannot be added */
    {"\"useImagePullSecret\": null",
     "\"useImagePullSecret\": null, \"imageSpec\": {\"baseImage\": \"a\", \"packages\": "
     "{\"pip\": [\"x\"]}}",
     EINVAL, "imageSpec", "imageSpec cannot be added to an existing image"},
};

static const struct refusal custom_refusals[] = {
    {"\"global\": true", "\"global\": true, \"url\": \"a/b:1\"", EINVAL, "url",
     "imageSpec cannot use with url and urlForGpu"},
    {"\"global\": true", "\"global\": true, \"urlForGpu\": \"a/b:1\"", EINVAL, "urlForGpu",
     "imageSpec cannot use with url and urlForGpu"},
    {"\"baseImage\": \"jupyter/base-notebook\"", "\"baseImage\": \"\"", EINVAL,
     "imageSpec.baseImage", "Invalid imageSpec: baseImage is required"},
    {"    \"baseImage\": \"jupyter/base-notebook\",\n", "", EINVAL, "imageSpec.baseImage",
     "Invalid imageSpec: baseImage is required"},
    {"\"baseImage\": \"jupyter/base-notebook\"", "\"baseImage\": \"Jupyter/x\"", EINVAL,
     "imageSpec.baseImage", "must be lower case"},
    {"\"packages\": {\n      \"apt\": [],\n      \"pip\": [\n        \"pytest\"\n      ],\n      "
     "\"conda\": []\n    }",
     "\"packages\": {}", EINVAL, "imageSpec.packages", "Invalid imageSpec: packages is required"},
    {"\"packages\": {\n      \"apt\": [],\n      \"pip\": [\n        \"pytest\"\n      ],\n      "
     "\"conda\": []\n    }",
     "\"packages\": null", EINVAL, "imageSpec.packages", "Invalid imageSpec: packages is required"},
    {"\"apt\": []", "\"yum\": []", EINVAL, "imageSpec.packages",
     "Invalid imageSpec: packages is a dict with {apt, pip, conda} keys and you have use at "
     "least one"},
    {"\"packages\": {", "\"packages\": [], \"x\": {", EINVAL, "imageSpec.packages",
     "Invalid imageSpec: packages is a dict with {apt, pip, conda} keys"},
    {"\"apt\": []", "\"apt\": \"curl\"", EINVAL, "imageSpec.packages.apt",
     "Invalid imageSpec: packages values should be a list"},
    {"\"apt\": []", "\"apt\": [1]", EINVAL, "imageSpec.packages.apt",
     "imageSpec.packages.apt must be a list of package names (strings); item 1 is a number"},
    {"\"apt\": []", "\"apt\": [\"\"]", EINVAL, "imageSpec.packages.apt",
     "imageSpec.packages.apt item 1 is empty"},
    {"\"apt\": []", "\"apt\": [], \"apt\": []", EINVAL, "imageSpec.packages.apt", "duplicate key"},
    /* names primehub-controller's builder would drop without a word */
    {"\"apt\": []", "\"apt\": [\"curl\", \"numpy>=1.20\"]", EINVAL, "imageSpec.packages.apt",
     "imageSpec.packages.apt item 2 \"numpy>=1.20\" has '>', which PrimeHub's image builder"},
    {"\"conda\": []", "\"conda\": [\"torch==1.8+cpu\"]", EINVAL, "imageSpec.packages.conda",
     "item 1 \"torch==1.8+cpu\" has '+'"},
    {"\"conda\": []", "\"conda\": [\"pkg[extra]\"]", EINVAL, "imageSpec.packages.conda",
     "has '[', which PrimeHub's image builder does not accept: it would leave the package out"},
    {"\"conda\": []", "\"conda\": [\"caf\u00e9\"]", EINVAL, "imageSpec.packages.conda",
     "has a character PrimeHub's image builder does not accept"},
    {"\"conda\": []", "\"conda\": [\"a b\"]", EINVAL, "imageSpec.packages.conda", "has ' '"},
    {"\"conda\": []", "\"conda\": [\"numpy==1.20\", \"libgl1-mesa_glx:amd64\", \"py3.8=1\"]", 0,
     NULL, NULL},
    {"\"cancel\": false", "\"cancel\": false, \"updateTime\": \"x\"", EINVAL,
     "imageSpec.updateTime", "imageSpec.updateTime is read-only"},
    {"\"cancel\": false", "\"cancel\": false, \"basImage\": \"x\"", EINVAL, "imageSpec.basImage",
     "unknown key \"basImage\" in imageSpec (did you mean \"baseImage\"?)"},
    {"\"cancel\": false", "\"cancel\": \"no\"", EINVAL, "imageSpec.cancel",
     "imageSpec.cancel must be true, false or null"},
    {"\"pullSecret\": null", "\"pullSecret\": \"nope\"", EINVAL, "imageSpec.pullSecret",
     "imageSpec.pullSecret \"nope\" is not an image pull secret"},
    {"\"cancel\": false", "\"cancel\": true", 0, NULL, NULL},
    {"\"pytest\"\n      ],\n      \"conda\": []\n    },\n    \"cancel\": false",
     "\"pytest\", \"numpy\"\n      ],\n      \"conda\": []\n    },\n    \"cancel\": true", EINVAL,
     "imageSpec.cancel", "not both in one save"},
};

static void run_refusals(struct ph_image *img, const struct refusal *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct spec_update u;
		struct ph_err err;
		int rc = plan_edit(img, r[i].from, r[i].to, &u, &err);

		CHECK_INT(rc, -r[i].errnum);
		if (rc != -r[i].errnum)
			fprintf(stderr, "  case %zu: %s -> %s: %s\n", i, r[i].from, r[i].to,
			        err.msg);
		if (r[i].errnum) {
			CHECK_INT(err.errnum, r[i].errnum);
			CHECK_STR(err.field, r[i].field);
			CHECK_CONTAINS(err.msg, r[i].msg);
			CHECK(spec_update_empty(&u));
		}
		spec_update_clear(&u);
	}
}

static void test_refusals(void)
{
	struct ph_image *img = sample(0), *c = custom_image();
	struct spec_update u;
	struct ph_err err;
	char *base = spec_render(c, NULL);

	run_refusals(img, plain_refusals, sizeof(plain_refusals) / sizeof(plain_refusals[0]));
	run_refusals(c, custom_refusals, sizeof(custom_refusals) / sizeof(custom_refusals[0]));

	/* imageSpec removed from a custom image */
	{
		char *cut = xstrdup(base);
		char *p = strstr(cut, ",\n  \"imageSpec\"");

		strcpy(p, "\n}\n");
		CHECK_INT(plan(c, cut, c, &u, &err), -EINVAL);
		CHECK_STR(err.field, "imageSpec");
		CHECK_CONTAINS(err.msg, "imageSpec cannot be removed");
		spec_update_clear(&u);
		free(cut);
	}
	/* cancel true -> false alone */
	c->image_spec->cancel = true;
	CHECK_INT(plan_edit(c, "\"cancel\": true", "\"cancel\": false", &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "a cancelled build cannot be resumed");
	spec_update_clear(&u);
	/* ... but together with a change it is a rebuild */
	CHECK_INT(plan_edit(c, "\"apt\": [],", "\"apt\": [\"curl\"],", &u, &err), 0);
	CHECK(u.rebuild != NULL);
	spec_update_clear(&u);
	free(base);
	ph_image_free(img);
	ph_image_free(c);
}

static void test_syntax_refusals(void)
{
	struct ph_image *img = sample(0);
	struct spec_update u;
	struct ph_err err;
	char *base = spec_render(img, NULL), *t, *big;

	/* trailing comma: points at the '}' on line 10 */
	t = edit(base, "\"useImagePullSecret\": null\n", "\"useImagePullSecret\": null,\n");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_STR(err.msg, "not valid JSON at line 10, column 1: trailing comma before '}' (remove "
	                   "the last ',')");
	CHECK(spec_update_empty(&u));
	free(t);
	/* missing comma */
	t = edit(base, "\"global\": false,", "\"global\": false");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "not valid JSON at line 9, column 3: ',' was expected before this "
	                        "key (a missing comma?)");
	free(t);
	/* truncated */
	t = edit(base, "  \"useImagePullSecret\": null\n}\n", "  \"useImagePullSecret\": nu");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "not valid JSON at line 9, column 25: unexpected word 'nu'");
	free(t);
	t = edit(base, "\n}\n", "\n");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "unexpected end of text: the object opened at line 1, column 1 is "
	                        "not closed");
	free(t);
	/* single quotes, control characters, \u0000, bad UTF-8 */
	t = edit(base, "\"base notebook\"", "'base notebook'");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "line 4, column 18: strings need double quotes");
	free(t);
	t = edit(base, "base notebook", "base\tnotebook");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "line 4, column 23: control character 0x09 inside a string");
	free(t);
	t = edit(base, "base notebook", "base\\u0000notebook");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "\\u0000 (a NUL character) is not allowed");
	free(t);
	t = edit(base, "base notebook", "base \xc3\x28 notebook");
	CHECK_INT(plan(img, t, img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "line 4, column 24: byte 0xc3 is not valid UTF-8");
	free(t);
	/* a NUL byte */
	{
		char buf[64] = "{\"description\": \"a";

		CHECK_INT(spec_plan_update(base, strlen(base), buf, 30, img, NULL, &u, &err),
		          -EINVAL);
		CHECK_CONTAINS(err.msg, "line 1, column 19: a NUL byte");
	}
	/* empty, not an object */
	CHECK_INT(plan(img, "", img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "the text is empty");
	CHECK_INT(plan(img, "  \n", img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "the text is empty");
	CHECK_INT(plan(img, "[1, 2]", img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "spec.json must be a JSON object {\"name\": ...}, not a list");
	CHECK_INT(plan(img, "{} {}", img, &u, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "more text after the end of the JSON value");
	/* too big: EFBIG before anything else */
	big = malloc(SPEC_MAX_SIZE + 2);
	memset(big, ' ', SPEC_MAX_SIZE + 1);
	big[0] = '{';
	big[SPEC_MAX_SIZE] = '}';
	big[SPEC_MAX_SIZE + 1] = '\0';
	CHECK_INT(plan(img, big, img, &u, &err), -EFBIG);
	CHECK_INT(err.errnum, EFBIG);
	CHECK_CONTAINS(err.msg, "at most 1048576 bytes");
	big[SPEC_MAX_SIZE - 1] = '}';
	big[SPEC_MAX_SIZE] = '\0';
	/* exactly the limit is read; "{ }" then removes type, which is refused */
	CHECK_INT(plan(img, big, img, &u, &err), -EINVAL);
	CHECK_STR(err.field, "type");
	free(big);
	/* a UTF-8 byte order mark is tolerated */
	t = malloc(strlen(base) + 4);
	strcpy(t, "\xef\xbb\xbf");
	strcat(t, base);
	CHECK_INT(plan(img, t, img, &u, &err), 0);
	CHECK(spec_update_empty(&u));
	free(t);
	free(base);
	ph_image_free(img);
}

/* --------------------------------------------------------- update: quirks */

static void test_pull_secret_and_group_resent(void)
{
	struct ph_image *img = sample(3);
	struct spec_update u;
	struct ph_err err;

	/* a secret id is re-sent with any other change (PrimeHub clears it otherwise) */
	free(img->use_image_pull_secret);
	img->use_image_pull_secret = xstrdup("image-my-image-registry");
	CHECK_INT(plan_edit(img, "\"global\": true", "\"global\": false", &u, &err), 0);
	CHECK_INT(u.changed, PH_IN_GLOBAL);
	CHECK_INT(u.input.set, PH_IN_GLOBAL | PH_IN_USE_IMAGE_PULL_SECRET);
	CHECK_STR(u.input.use_image_pull_secret, "image-my-image-registry");
	CHECK(!u.input.global);
	spec_update_clear(&u);

	/* "" stays "" (not null) */
	free(img->use_image_pull_secret);
	img->use_image_pull_secret = xstrdup("");
	CHECK_INT(plan_edit(img, "\"global\": true", "\"global\": false", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_GLOBAL | PH_IN_USE_IMAGE_PULL_SECRET);
	CHECK_STR(u.input.use_image_pull_secret, "");
	spec_update_clear(&u);

	/* "" shows as null (one spelling for "none", so diff -r of two mounts
	 * shows only real differences); the user's change wins, a valid id is
	 * allowed, and null <-> "" is no change at all */
	CHECK_INT(plan_edit(img, "\"useImagePullSecret\": null",
	                    "\"useImagePullSecret\": \"image-my-image-registry\"", &u, &err),
	          0);
	CHECK_INT(u.input.set, PH_IN_USE_IMAGE_PULL_SECRET);
	CHECK_STR(u.input.use_image_pull_secret, "image-my-image-registry");
	spec_update_clear(&u);
	CHECK_INT(plan_edit(img, "\"useImagePullSecret\": null", "\"useImagePullSecret\": \"\"", &u,
	                    &err),
	          0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);

	/* groupName (not shown) is re-sent too */
	img->group_name = xstrdup("team-a");
	CHECK_INT(plan_edit(img, "\"global\": true", "\"global\": false", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_GLOBAL | PH_IN_USE_IMAGE_PULL_SECRET | PH_IN_GROUP_NAME);
	CHECK_STR(u.input.group_name, "team-a");
	spec_update_clear(&u);
	ph_image_free(img);
}

static void test_url_quirks(void)
{
	struct ph_image *img = sample(0);
	struct spec_update u;
	struct ph_err err;

	/* url changed on "both": urlForGpu pinned to what the user sees */
	CHECK_INT(
	    plan_edit(img, "63fdf50a\",\n  \"urlForGpu\"", "v2\",\n  \"urlForGpu\"", &u, &err), 0);
	CHECK_INT(u.changed, PH_IN_URL);
	CHECK_INT(u.input.set, PH_IN_URL | PH_IN_URL_FOR_GPU);
	CHECK_STR(u.input.url, DS "base-notebook-v2");
	CHECK_STR(u.input.url_for_gpu, DS "base-notebook-63fdf50a-gpu");
	spec_update_clear(&u);

	/* both changed: as written */
	{
		char *base = spec_render(img, NULL);
		char *t1 = edit(base, "63fdf50a\",\n  \"urlForGpu\"", "v2\",\n  \"urlForGpu\"");
		char *t2 = edit(t1, "63fdf50a-gpu\"", "v2-gpu\"");

		CHECK_INT(plan(img, t2, img, &u, &err), 0);
		CHECK_INT(u.input.set, PH_IN_URL | PH_IN_URL_FOR_GPU);
		CHECK_STR(u.input.url_for_gpu, DS "base-notebook-v2-gpu");
		spec_update_clear(&u);
		free(base);
		free(t1);
		free(t2);
	}

	/* only urlForGpu */
	CHECK_INT(plan_edit(img, "63fdf50a-gpu\"", "v3-gpu\"", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_URL_FOR_GPU);
	spec_update_clear(&u);

	/* type to cpu with another urlForGpu: PrimeHub would set it to url,
	 * silently; refused, saying what to write */
	CHECK_INT(plan_edit(img, "\"type\": \"both\"", "\"type\": \"cpu\"", &u, &err), -EINVAL);
	CHECK_STR(err.field, "urlForGpu");
	CHECK_CONTAINS(err.msg, "changing type to \"cpu\" makes PrimeHub set urlForGpu to the url");
	CHECK_CONTAINS(err.msg, "set urlForGpu to \"" DS "base-notebook-63fdf50a\"");
	CHECK(spec_update_empty(&u));
	/* ... with urlForGpu equal to url in the same save: as written */
	{
		char *base = spec_render(img, NULL);
		char *t1 = edit(base, "\"type\": \"both\"", "\"type\": \"cpu\"");
		char *t2 = edit(t1, "63fdf50a-gpu\"", "63fdf50a\"");

		CHECK_INT(plan(img, t2, img, &u, &err), 0);
		CHECK_INT(u.input.set, PH_IN_TYPE | PH_IN_URL_FOR_GPU);
		CHECK_STR(u.input.type, "cpu");
		CHECK_STR(u.input.url_for_gpu, DS "base-notebook-63fdf50a");
		spec_update_clear(&u);
		free(base);
		free(t1);
		free(t2);
	}

	/* on a cpu image a new url is not pinned (urlForGpu follows url there) */
	free(img->type);
	img->type = xstrdup("cpu");
	free(img->url_for_gpu);
	img->url_for_gpu = xstrdup(img->url);
	CHECK_INT(
	    plan_edit(img, "63fdf50a\",\n  \"urlForGpu\"", "v2\",\n  \"urlForGpu\"", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_URL);
	spec_update_clear(&u);
	/* ... and urlForGpu may be changed along with url, to the same value */
	{
		char *base = spec_render(img, NULL);
		char *t1 = edit(base, "63fdf50a\",\n  \"urlForGpu\"", "v2\",\n  \"urlForGpu\"");
		char *t2 = edit(t1, "63fdf50a\",\n  \"global\"", "v2\",\n  \"global\"");

		CHECK_INT(plan(img, t2, img, &u, &err), 0);
		CHECK_INT(u.input.set, PH_IN_URL | PH_IN_URL_FOR_GPU);
		spec_update_clear(&u);
		free(t2);
		t2 = edit(t1, "63fdf50a\",\n  \"global\"", "v9\",\n  \"global\"");
		CHECK_INT(plan(img, t2, img, &u, &err), -EINVAL);
		CHECK_STR(err.field, "urlForGpu");
		CHECK_CONTAINS(err.msg, "image of type \"cpu\"");
		free(base);
		free(t1);
		free(t2);
	}
	/* cpu -> both alone: the file's urlForGpu is sent (PrimeHub would keep
	 * the one it holds, which need not be the file's) */
	CHECK_INT(plan_edit(img, "\"type\": \"cpu\"", "\"type\": \"both\"", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_TYPE | PH_IN_URL_FOR_GPU);
	CHECK_STR(u.input.url_for_gpu, DS "base-notebook-63fdf50a");
	spec_update_clear(&u);
	/* cpu -> both with a new url: the gpu url the user sees is kept */
	{
		char *base = spec_render(img, NULL);
		char *t1 = edit(base, "\"type\": \"cpu\"", "\"type\": \"both\"");
		char *t2 = edit(t1, "63fdf50a\",\n  \"urlForGpu\"", "v2\",\n  \"urlForGpu\"");

		CHECK_INT(plan(img, t2, img, &u, &err), 0);
		CHECK_INT(u.input.set, PH_IN_TYPE | PH_IN_URL | PH_IN_URL_FOR_GPU);
		CHECK_STR(u.input.url_for_gpu, DS "base-notebook-63fdf50a");
		spec_update_clear(&u);
		free(base);
		free(t1);
		free(t2);
	}
	ph_image_free(img);

	/* a template-made image without url: setting it is fine, "" <-> null is nothing */
	img = image_new("x", "x", NULL, "both", NULL, NULL, false, "");
	CHECK_INT(plan_edit(img, "\"url\": null", "\"url\": \"\"", &u, &err), 0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);
	CHECK_INT(plan_edit(img, "\"url\": null", "\"url\": \"registry.example.com:5000/x/y:1\"",
	                    &u, &err),
	          0);
	CHECK_INT(u.input.set, PH_IN_URL | PH_IN_USE_IMAGE_PULL_SECRET);
	spec_update_clear(&u);
	ph_image_free(img);
}

static void test_odd_server_values(void)
{
	/* values our rules refuse, already on the server: unchanged they pass */
	struct ph_image *img =
	    image_new("odd", "", "d", "", "Not A Ref", "x y", true, "ghost-secret");
	struct spec_update u;
	struct ph_err err;
	char *base = spec_render(img, NULL);

	CHECK_INT(plan(img, base, img, &u, &err), 0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);
	CHECK_INT(plan_edit(img, "\"description\": \"d\"", "\"description\": \"e\"", &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_DESCRIPTION | PH_IN_USE_IMAGE_PULL_SECRET);
	CHECK_STR(u.input.use_image_pull_secret, "ghost-secret");
	spec_update_clear(&u);
	free(base);
	ph_image_free(img);

	/* a custom image with odd imageSpec values: cancel still works */
	img = custom_image();
	free(img->image_spec->base_image);
	img->image_spec->base_image = xstrdup("Not Valid");
	ph_strlist_append(&img->image_spec->apt, "");
	CHECK_INT(plan_edit(img, "\"cancel\": false", "\"cancel\": true", &u, &err), 0);
	CHECK(u.cancel_build && !u.rebuild && u.input.set == 0);
	CHECK_INT(u.changed, PH_IN_IMAGE_SPEC);
	spec_update_clear(&u);
	/* a rebuild checks only what changed (pip), not the odd baseImage/apt */
	CHECK_INT(plan_edit(img, "\"pytest\"", "\"pytest\", \"numpy==1.24\"", &u, &err), 0);
	CHECK(u.rebuild != NULL);
	spec_update_clear(&u);
	ph_image_free(img);
}

static void test_rebuild(void)
{
	struct ph_image *img = custom_image();
	struct spec_update u;
	struct ph_err err;
	struct ph_build_spec *r;

	CHECK_INT(plan_edit(img, "\"apt\": []", "\"apt\": [\"curl\", \"git\"]", &u, &err), 0);
	r = u.rebuild;
	CHECK(r != NULL);
	CHECK(!u.cancel_build);
	CHECK_INT(u.input.set, 0); /* no updateImage */
	CHECK_INT(u.changed, PH_IN_IMAGE_SPEC);
	if (r) {
		CHECK_STR(r->base_image, "jupyter/base-notebook");
		CHECK(r->pull_secret == NULL);
		CHECK(r->has_packages && !r->cancel && !r->update_time);
		CHECK_INT(r->apt.n, 2);
		CHECK_INT(r->pip.n, 1);
		CHECK_INT(r->conda.n, 0);
		CHECK_STR(r->apt.n == 2 ? r->apt.items[1] : NULL, "git");
	}
	spec_update_clear(&u);

	/* rebuild plus a plain field: both calls */
	{
		char *base = spec_render(img, NULL);
		char *t1 = edit(base, "\"baseImage\": \"jupyter/base-notebook\"",
		                "\"baseImage\": \"jupyter/base-notebook:2023\"");
		char *t2 = edit(t1, "\"description\": null", "\"description\": \"mine\"");

		CHECK_INT(plan(img, t2, img, &u, &err), 0);
		CHECK(u.rebuild && u.rebuild->base_image &&
		      strcmp(u.rebuild->base_image, "jupyter/base-notebook:2023") == 0);
		CHECK_INT(u.input.set, PH_IN_DESCRIPTION | PH_IN_USE_IMAGE_PULL_SECRET);
		CHECK_STR(u.input.use_image_pull_secret, "");
		CHECK_INT(u.changed, PH_IN_DESCRIPTION | PH_IN_IMAGE_SPEC);
		spec_update_clear(&u);
		free(base);
		free(t1);
		free(t2);
	}
	/* a package list left out is an empty list */
	CHECK_INT(plan_edit(img, "      \"apt\": [],\n", "", &u, &err), 0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);
	/* cancel */
	CHECK_INT(plan_edit(img, "\"cancel\": false", "\"cancel\": true", &u, &err), 0);
	CHECK(u.cancel_build && !u.rebuild && u.input.set == 0);
	spec_update_clear(&u);
	/* cancel: null is false */
	CHECK_INT(plan_edit(img, "\"cancel\": false", "\"cancel\": null", &u, &err), 0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);
	ph_image_free(img);
}

/* ------------------------------------------------------ update: conflicts */

static void test_conflicts(void)
{
	struct ph_image *opened = sample(0), *now = sample(0);
	struct spec_update u;
	struct ph_err err;
	char *base = spec_render(opened, NULL);
	char *t = edit(base, "\"base notebook\"", "\"mine\"");

	/* the server changed description meanwhile; the user changed it too */
	free(now->description);
	now->description = xstrdup("theirs");
	CHECK_INT(plan(opened, t, now, &u, &err), -EBUSY);
	CHECK_INT(err.errnum, EBUSY);
	CHECK_STR(err.field, "description");
	CHECK_CONTAINS(err.msg, "description was changed on the server since you opened the file "
	                        "(it is now \"theirs\")");
	CHECK(spec_update_empty(&u));
	free(t);

	/* the user changed something else: fine, and theirs is not sent back */
	t = edit(base, "\"global\": false", "\"global\": true");
	CHECK_INT(plan(opened, t, now, &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_GLOBAL);
	spec_update_clear(&u);
	free(t);

	/* the server already has the user's value: no conflict */
	t = edit(base, "\"base notebook\"", "\"theirs\"");
	CHECK_INT(plan(opened, t, now, &u, &err), 0);
	CHECK_INT(u.input.set, PH_IN_DESCRIPTION);
	spec_update_clear(&u);
	free(t);

	/* url changed on the server, user changes url: conflict; user changes
	 * only the gpu url while the server changed url: fine */
	free(now->url);
	now->url = xstrdup(DS "base-notebook-server");
	t = edit(base, "63fdf50a\",\n  \"urlForGpu\"", "mine\",\n  \"urlForGpu\"");
	CHECK_INT(plan(opened, t, now, &u, &err), -EBUSY);
	CHECK_STR(err.field, "url");
	free(t);
	/* the server's gpu url survives a url change the user made */
	ph_image_free(now);
	now = sample(0);
	free(now->url_for_gpu);
	now->url_for_gpu = xstrdup(DS "gpu-server");
	t = edit(base, "63fdf50a\",\n  \"urlForGpu\"", "mine\",\n  \"urlForGpu\"");
	CHECK_INT(plan(opened, t, now, &u, &err), 0);
	CHECK_STR(u.input.url_for_gpu, DS "gpu-server");
	spec_update_clear(&u);
	free(t);
	free(base);
	ph_image_free(opened);
	ph_image_free(now);

	/* imageSpec: the server rebuilt with other packages; the user edits packages */
	opened = custom_image();
	now = custom_image();
	ph_strlist_append(&now->image_spec->conda, "numpy");
	base = spec_render(opened, NULL);
	t = edit(base, "\"apt\": []", "\"apt\": [\"curl\"]");
	CHECK_INT(plan(opened, t, now, &u, &err), -EBUSY);
	CHECK_STR(err.field, "imageSpec");
	free(t);
	/* the server already has what the user wants: nothing to rebuild */
	t = edit(base, "\"conda\": []", "\"conda\": [\"numpy\"]");
	CHECK_INT(plan(opened, t, now, &u, &err), 0);
	CHECK(u.rebuild == NULL);
	CHECK_INT(u.changed, PH_IN_IMAGE_SPEC);
	spec_update_clear(&u);
	free(t);
	/* already cancelled: nothing to send */
	now->image_spec->cancel = true;
	t = edit(base, "\"cancel\": false", "\"cancel\": true");
	CHECK_INT(plan(opened, t, now, &u, &err), 0);
	CHECK(spec_update_empty(&u));
	spec_update_clear(&u);
	free(t);
	free(base);
	ph_image_free(opened);
	ph_image_free(now);
}

/* ------------------------------------------------------------- create */

static int create(const char *dir, const char *text, struct ph_image_input *in, struct ph_err *err)
{
	struct spec_context ctx = ctx_for(dir);

	ph_err_clear(err);
	return spec_plan_create(text, strlen(text), &ctx, in, err);
}

static void test_create(void)
{
	struct ph_image_input in;
	struct ph_err err;
	char *tpl = spec_render_template("my-new-image", NULL);
	char *t;

	/* the template as-is is creatable (no url: not ready yet) */
	CHECK_INT(create("my-new-image", tpl, &in, &err), 0);
	CHECK_INT(in.set, PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL | PH_IN_DISPLAY_NAME);
	CHECK_STR(in.name, "my-new-image");
	CHECK_STR(in.type, "both");
	CHECK_STR(in.display_name, "my-new-image");
	CHECK(!in.global && !in.image_spec);
	ph_image_input_clear(&in);

	/* the documented create payload */
	CHECK_INT(
	    create("my-first-image",
	           "{\"name\":\"my-first-image\",\"displayName\":\"Learning how to create an "
	           "image from SDK\",\"description\":\"base-notebook with python 3.7\","
	           "\"type\":\"both\",\"url\":\"infuseai/docker-stacks:base-notebook-63fdf50a\","
	           "\"urlForGpu\":\"infuseai/docker-stacks:base-notebook-63fdf50a-gpu\","
	           "\"global\":true}",
	           &in, &err),
	    0);
	CHECK_INT(in.set, PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL | PH_IN_DISPLAY_NAME |
	                      PH_IN_DESCRIPTION | PH_IN_URL | PH_IN_URL_FOR_GPU);
	CHECK(in.global);
	CHECK_STR(in.url_for_gpu, DS "base-notebook-63fdf50a-gpu");
	ph_image_input_clear(&in);

	/* the custom one: name may be left out, type defaults to both */
	CHECK_INT(create("my-custom-image",
	                 "{\"global\":true,\"imageSpec\":{\"baseImage\":\"jupyter/base-notebook\","
	                 "\"packages\":{\"pip\":[\"pytest\"]}},\"useImagePullSecret\":"
	                 "\"image-my-image-registry\"}",
	                 &in, &err),
	          0);
	CHECK_INT(in.set, PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL | PH_IN_IMAGE_SPEC |
	                      PH_IN_USE_IMAGE_PULL_SECRET);
	CHECK_STR(in.type, "both");
	CHECK(in.image_spec && in.image_spec->has_packages && in.image_spec->pip.n == 1 &&
	      in.image_spec->apt.n == 0);
	ph_image_input_clear(&in);

	/* another image's name (a copied spec.json): the directory's wins */
	t = edit(tpl, "\"name\": \"my-new-image\"", "\"name\": \"other\"");
	CHECK_INT(create("my-new-image", t, &in, &err), 0);
	CHECK_STR(in.name, "my-new-image");
	ph_image_input_clear(&in);
	free(t);

	/* refusals */
	t = edit(tpl, "\"name\": \"my-new-image\"", "\"name\": \"My_Image\"");
	CHECK_INT(create("my-new-image", t, &in, &err), -EINVAL);
	CHECK_STR(err.msg, "[name] should be lower case alphanumeric characters, '-' or '.', and "
	                   "must start and end with an alphanumeric character.");
	free(t);
	CHECK_INT(create("Bad_Name", "{}", &in, &err), -EINVAL);
	CHECK_STR(err.msg, "[name] should be lower case alphanumeric characters, '-' or '.', and "
	                   "must start and end with an alphanumeric character.");
	t = edit(tpl, "\"type\": \"both\"", "\"type\": \"tpu\"");
	CHECK_INT(create("my-new-image", t, &in, &err), -EINVAL);
	CHECK_STR(err.msg, "type should be one of ['cpu', 'gpu', 'both']");
	free(t);
	t = edit(tpl, "\"url\": null", "\"url\": \"a/b:1\", \"imageSpec\": {\"baseImage\": \"c\"}");
	CHECK_INT(create("my-new-image", t, &in, &err), -EINVAL);
	CHECK_STR(err.msg, "imageSpec cannot use with url and urlForGpu");
	free(t);
	CHECK_INT(create("x", "{\"imageSpec\": {}}", &in, &err), -EINVAL);
	CHECK_STR(err.msg, "Invalid imageSpec: baseImage is required");
	CHECK_INT(create("x", "{\"imageSpec\": {\"baseImage\": \"ubuntu\"}}", &in, &err), -EINVAL);
	CHECK_STR(err.msg, "Invalid imageSpec: packages is required");
	CHECK_INT(create("x",
	                 "{\"imageSpec\": {\"baseImage\": \"ubuntu\", \"packages\": {\"npm\": "
	                 "[]}}}",
	                 &in, &err),
	          -EINVAL);
	CHECK_CONTAINS(err.msg,
	               "Invalid imageSpec: packages is a dict with {apt, pip, conda} keys");
	CHECK_INT(create("x",
	                 "{\"imageSpec\": {\"baseImage\": \"ubuntu\", \"packages\": {\"apt\": "
	                 "{}}}}",
	                 &in, &err),
	          -EINVAL);
	CHECK_STR(err.msg, "Invalid imageSpec: packages values should be a list");
	CHECK_INT(create("x", "{\"url\": \"UPPER/case\"}", &in, &err), -EINVAL);
	CHECK_STR(err.field, "url");
	CHECK_INT(create("x", "{\"type\": \"gpu\", \"url\": \"a/b:1\", \"urlForGpu\": \"a/c:1\"}",
	                 &in, &err),
	          -EINVAL);
	CHECK_STR(err.field, "urlForGpu");
	CHECK_INT(create("x", "{\"type\": \"gpu\", \"url\": \"a/b:1\", \"urlForGpu\": \"a/b:1\"}",
	                 &in, &err),
	          0);
	ph_image_input_clear(&in);
	CHECK_INT(
	    create("x", "{\"useImagePullSecret\": \"gitsync-secret-dataset-secret\"}", &in, &err),
	    -EINVAL);
	CHECK_STR(err.field, "useImagePullSecret");
	CHECK_INT(create("x", "{\"isReady\": true}", &in, &err), -EINVAL);
	CHECK_STR(err.msg, "isReady is read-only (see status.json)");
	CHECK_INT(create("x", "{\"url\": \"\", \"urlForGpu\": null}", &in, &err), 0);
	CHECK_INT(in.set, PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL | PH_IN_URL);
	ph_image_input_clear(&in);
	free(tpl);
}

/* ------------------------------------------------------------- checks */

static void test_check_name(void)
{
	static const char *const good[] = {"a", "base-notebook", "tf-2", "a.b-c.d9", "0"};
	static const char *const bad[] = {"",   "-a", "a-",   "A",   "a_b", "a..b",
	                                  ".a", "a.", "a.-b", "a b", "é"};
	struct ph_err err;
	char longname[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_INT(spec_check_image_name(good[i], &err), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(spec_check_image_name(bad[i], &err), -EINVAL);
		CHECK_STR(err.msg, "[name] should be lower case alphanumeric characters, '-' or "
		                   "'.', and must start and end with an alphanumeric character.");
		CHECK_STR(err.field, "name");
	}
	CHECK_INT(spec_check_image_name(NULL, &err), -EINVAL);
	memset(longname, 'a', 253);
	longname[253] = '\0';
	CHECK_INT(spec_check_image_name(longname, &err), 0);
	longname[253] = 'a';
	longname[254] = '\0';
	CHECK_INT(spec_check_image_name(longname, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "at most 253 characters");
	CHECK_INT(spec_check_image_name("ok", NULL), 0);
	CHECK_INT(spec_check_image_name("NO", NULL), -EINVAL);
}

static void test_check_ref(void)
{
	static const char *const good[] = {
	    "ubuntu",
	    "ubuntu:20.04",
	    "infuseai/docker-stacks:base-notebook-63fdf50a",
	    "jupyter/base-notebook",
	    "registry.gitlab.com/group/sub/project:v1.2_3",
	    "localhost/foo",
	    "localhost:5000/foo/bar:latest",
	    "registry.example.com:443/a__b/c.d/e---f:_tag",
	    "[::1]:5000/foo",
	    "Registry.Example.COM/foo",
	    "foo@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    "foo:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    "foo@sha512+x.y:0123456789abcdef0123456789ABCDEF",
	};
	static const struct {
		const char *ref, *msg;
	} bad[] = {
	    {"", "url is empty"},
	    {"Ubuntu", "url: the repository path \"Ubuntu\" must be lower case"},
	    {"foo/Bar", "must be lower case"},
	    {"a b", "url must not contain spaces or control characters (position 2)"},
	    {"a\tb", "must not contain spaces"},
	    {"ünï", "url must be plain ASCII"},
	    {"https://registry.example.com/foo", "must not start with a scheme"},
	    {"foo:", "url: tag \"\" is invalid"},
	    {"foo:-x", "url: tag \"-x\" is invalid"},
	    {"foo:a/b", "registry port \"a\" must be a number"},
	    {"foo@sha256:abc", "digest \"sha256:abc\" is invalid"},
	    {"foo@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
	     "digest"},
	    {"foo@md5", "digest"},
	    {"foo@", "digest"},
	    {"foo//bar", "has an empty part"},
	    {"foo/", "has an empty part"},
	    {"/foo", "has an empty part"},
	    {"foo..bar", "\"foo..bar\" in the repository path is invalid"},
	    {"foo___bar", "in the repository path is invalid"},
	    {"-foo", "in the repository path is invalid"},
	    {"foo-", "in the repository path is invalid"},
	    {"registry.example.com/", "the repository path is missing"},
	    {"registry-.example.com/foo", "registry host \"registry-.example.com\" is invalid"},
	    {"registry.example.com:x/foo", "registry port \"x\" must be a number"},
	    {"registry.example.com:/foo", "registry port \"\" must be a number"},
	    {"[zz]:5000/foo", "registry host"},
	    {":tag", "has no repository name"},
	    {"@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	     "has no repository name"},
	};
	struct ph_err err;
	char big[400];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int r = spec_check_image_ref("url", good[i], &err);

		CHECK_INT(r, 0);
		if (r)
			fprintf(stderr, "  %s: %s\n", good[i], err.msg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(spec_check_image_ref("url", bad[i].ref, &err), -EINVAL);
		CHECK_CONTAINS(err.msg, bad[i].msg);
		CHECK_STR(err.field, "url");
	}
	CHECK_INT(spec_check_image_ref("url", NULL, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "url is null");
	/* 255 characters of name, then one more */
	memset(big, 'a', 255);
	strcpy(big + 255, ":tag");
	CHECK_INT(spec_check_image_ref("url", big, &err), 0);
	big[255] = 'a';
	strcpy(big + 256, ":tag");
	CHECK_INT(spec_check_image_ref("url", big, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "the repository name is 256 characters; at most 255");
	/* tag of 128 is fine, 129 is not */
	strcpy(big, "foo:");
	memset(big + 4, 't', 128);
	big[132] = '\0';
	CHECK_INT(spec_check_image_ref("url", big, &err), 0);
	strcpy(big + 132, "t");
	CHECK_INT(spec_check_image_ref("url", big, &err), -EINVAL);
	CHECK_INT(spec_check_image_ref(NULL, "Bad", NULL), -EINVAL);
}

static void test_json_text(void)
{
	struct jt_syntax_error e;
	unsigned line, col;
	char q[32];

	jt_line_col("ab\ncé\nd", 8, 6, &line, &col);
	CHECK_INT(line, 2);
	CHECK_INT(col, 3);
	jt_quote(q, sizeof(q), "a\"b\n", 40);
	CHECK_STR(q, "\"a\\\"b\\u000a\"");
	jt_quote(q, sizeof(q), "abcdefghijklmnopqrstuvwxyz0123456789", 10);
	CHECK_STR(q, "\"abcdefghij...\"");
	jt_quote(q, sizeof(q), NULL, 10);
	CHECK_STR(q, "null");
	{
		const char *ok =
		    "{\"a\": [1, -2.5e3, 0.5E+2, true, false, null, \"\\ud83d\\ude00\"]}";

		CHECK_INT(jt_check(ok, strlen(ok), &e), 0);
	}
	CHECK_INT(jt_check("01", 2, &e), -EINVAL);
	CHECK_CONTAINS(e.hint, "leading zeros");
	CHECK_INT(jt_check("\"\\ud83d\"", 8, &e), -EINVAL);
	CHECK_CONTAINS(e.hint, "surrogate");
	{
		char deep[200];

		memset(deep, '[', 100);
		memset(deep + 100, ']', 100);
		CHECK_INT(jt_check(deep, 200, &e), -EINVAL);
		CHECK_CONTAINS(e.hint, "nested more than 64 levels deep");
		CHECK_INT(jt_check(deep + 36, 128, &e), 0);
	}
}

int main(void)
{
	test_render_samples();
	test_render_custom();
	test_render_escapes();
	test_render_status();
	test_render_template();
	test_roundtrip_unchanged();
	test_simple_changes();
	test_refusals();
	test_syntax_refusals();
	test_pull_secret_and_group_resent();
	test_url_quirks();
	test_odd_server_values();
	test_rebuild();
	test_conflicts();
	test_create();
	test_check_name();
	test_check_ref();
	test_json_text();
	UNIT_DONE();
}
