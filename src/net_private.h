/*
 * net_private.h - what the network layer's own files share and nobody else
 * needs: not part of the interface in include/primehubfs/.
 */
#ifndef PRIMEHUBFS_NET_PRIVATE_H
#define PRIMEHUBFS_NET_PRIVATE_H

#include "primehubfs/graphql.h"
#include "primehubfs/http.h"

/* The abort hook set by gql_client_set_abort, so the REST log fetch in
 * primehub.c can be interrupted like a GraphQL request. */
void gql_client_abort_hook(const struct gql_client *c, http_abort_fn *cb, void **arg);

/* A non-JSON body quoted in a message: at most this many bytes of it. */
#define NET_SNIPPET_MAX 100

/* The start of body as one line of valid UTF-8, "..." when cut; outsz should
 * be at least NET_SNIPPET_MAX + 16. */
void net_snippet(const char *body, size_t len, char *out, size_t outsz);

/*
 * The tree answer decoded while it arrives (primehub_stream.c): feed it the
 * JSON events of the "data" value, in order, then finish.  The result is
 * what ph_decode_tree gives for the same data (same leniency, same
 * messages).  ph_tree_stream_event returns 0, or -ENOMEM after which the
 * stream only fails.  finish moves the tree into *out (0) or gives -EPROTO /
 * -ENOMEM with a reason and an empty *out; free the stream either way.
 */
struct jp_event;
struct ph_tree;
struct ph_tree_stream;
int ph_tree_stream_new(struct ph_tree_stream **out);
/* Which of the answer's lists must be there (PH_LIST_ALL unless told):
 * the tree asks for images only, the catalog for groups and secrets.  A
 * list present but not a list is -EPROTO whether asked for or not. */
enum { PH_LIST_IMAGES = 1, PH_LIST_GROUPS = 2, PH_LIST_SECRETS = 4, PH_LIST_ALL = 7 };
void ph_tree_stream_require(struct ph_tree_stream *s, unsigned lists);
int ph_tree_stream_event(struct ph_tree_stream *s, const struct jp_event *ev);
int ph_tree_stream_finish(struct ph_tree_stream *s, struct ph_tree *out, struct ph_err *err);
void ph_tree_stream_free(struct ph_tree_stream *s);

/* The same over a whole "data" text (tests, the fuzzer): -EPROTO also for
 * text that is not strict JSON. */
int ph_decode_tree_text(const char *text, size_t len, struct ph_tree *out, struct ph_err *err);

/* Run the tree or catalog query (document, variables; lists: the
 * PH_LIST_* it asks for) and decode its answer while it
 * arrives (gql_execute_stream + the stream above): what gql_execute and
 * ph_decode_tree give, without the body or a cJSON tree in memory.  Past
 * gql_client_max_stream bytes: -EFBIG naming -o max_tree_mb. */
int ph_fetch_tree_streamed(struct gql_client *gql, const char *document, const cJSON *variables,
                           unsigned lists, struct ph_tree *out, struct ph_err *err);

#endif
