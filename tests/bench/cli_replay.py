#!/usr/bin/python3
"""One command of the official PrimeHub CLI, replayed on the wire.

    PRIMEHUB_API_ENDPOINT=URL PRIMEHUB_API_TOKEN=T cli_replay.py list
    PRIMEHUB_API_ENDPOINT=URL PRIMEHUB_API_TOKEN=T cli_replay.py get ID

tests/bench/run.py runs this once per CLI command, as a user would run
`primehub admin images list` and then `primehub admin images get ID` for
every image: each command is a fresh process that pays an interpreter start.
The documents, variables and encoding are the SDK's (docs/primehub-facts.md;
sdk primehub/admin_images.py, primehub/utils/http_client.py): a form body
with `query` and `variables` as a JSON string, lowercase `authorization`,
a new connection per request (requests.post without a session), 10 s timeout.

`list` without --page asks page 1, 2, 3... until `edges` is empty and prints
one image per line; `get` prints the image as JSON.

The SDK's CLI loads click, requests and tabulate at every start and posts
with requests.  When Debian's python3-click, python3-requests and
python3-tabulate are installed, this replay does the same (the process cost
then comes close to the real CLI's, which also imports the SDK's own
modules: still a little faster, so the ratio stays conservative); without
them it falls back to the standard library and is faster still.
"""
import http.client
import json
import os
import sys
import urllib.parse

try:
    import click  # noqa: F401  (loaded by the CLI's entry point)
    import requests
    import tabulate  # noqa: F401  (loaded by the CLI's output formatting)
    SDK_DEPS = True
except ImportError:
    SDK_DEPS = False

LIST_QUERY = """
        query ImagesQuery($page: Int, $where: ImageWhereInput, $orderBy: ImageOrderByInput) {
          imagesConnection(
            page: $page
            orderBy: $orderBy
            where: $where
            mode: SYSTEM_ONLY
          ) {
            edges {
              cursor
              node {
                id
                name
                displayName
                description
                type
                isReady
              }
            }
            pageInfo {
              currentPage
              totalPage
            }
          }
        }
        """

GET_QUERY = """
        query ImageQuery($where: ImageWhereUniqueInput!) {
          image(where: $where) {
            id
            name
            displayName
            description
            type
            url
            urlForGpu
            useImagePullSecret
            global
            groups {
              id
              name
              displayName
            }
            isReady
            imageSpec {
              baseImage
              pullSecret
              packages {
                apt
                conda
                pip
              }
            }
            jobStatus {
              phase
            }
            logEndpoint
          }
        }
        """


def request(endpoint, token, query, variables):
    if SDK_DEPS:
        # As sdk primehub/utils/http_client.py does: a form post, no session.
        resp = requests.post(endpoint, data={"query": query, "variables": json.dumps(variables)},
                             headers={"authorization": "Bearer " + token}, timeout=10)
        result = resp.json()
        if "errors" in result:
            raise SystemExit("error: " + json.dumps(result["errors"]))
        return result
    url = urllib.parse.urlsplit(endpoint)
    body = urllib.parse.urlencode({"query": query, "variables": json.dumps(variables)})
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("POST", url.path, body, {
            "authorization": "Bearer " + token,
            "Content-Type": "application/x-www-form-urlencoded",
        })
        resp = conn.getresponse()
        result = json.loads(resp.read())
    finally:
        conn.close()
    if "errors" in result:
        raise SystemExit("error: " + json.dumps(result["errors"]))
    return result


def main(argv):
    endpoint = os.environ.get("PRIMEHUB_API_ENDPOINT")
    token = os.environ.get("PRIMEHUB_API_TOKEN")
    if not endpoint or not token or len(argv) < 2 or argv[1] not in ("list", "get"):
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "list":
        page = 1
        while True:
            result = request(endpoint, token, LIST_QUERY, {"page": page})
            edges = result["data"]["imagesConnection"]["edges"]
            if not edges:
                break
            for edge in edges:
                node = edge["node"]
                sys.stdout.write("%s\t%s\t%s\t%s\n" % (node["id"], node["displayName"],
                                                       node["type"], node["isReady"]))
            page += 1
        return 0
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    image = request(endpoint, token, GET_QUERY, {"where": {"id": argv[2]}})["data"]["image"]
    if image is None:
        return 1  # the CLI: "return required", prints nothing
    sys.stdout.write(json.dumps(image, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
