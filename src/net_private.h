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

#endif
