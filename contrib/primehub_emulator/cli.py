"""Command line: bind, seed or load state, print the endpoint, serve.

The first line on stdout is the GraphQL endpoint URL, printed only once the
socket is listening, so a test can start the emulator with ``--port 0`` and
read where it is.  Nothing else goes to stdout.
"""

import argparse
import signal
import sys

from . import builds, server
from .costs import CostModel
from .pipeline import GraphQLService
from .resolvers import build_schema
from .store import Store


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="primehub-emulator",
        description="Emulate the PrimeHub GraphQL API (admin images subset) on loopback.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument("--token", default="primehub-emulator-token",
                        help="API token of the admin user phadmin")
    parser.add_argument("--user-token", default=None,
                        help="API token of the non-admin user phuser (optional)")
    parser.add_argument("--images", type=int, default=0, metavar="N",
                        help="add N synthetic admin images to the seed")
    parser.add_argument("--groups", type=int, default=0, metavar="N",
                        help="add N synthetic groups to the seed and connect every synthetic "
                             "image to 0-3 of them")
    parser.add_argument("--state", default=None, metavar="FILE",
                        help="load state from FILE if it exists (then --images and --groups "
                             "are ignored); "
                             "save it atomically after every change")
    parser.add_argument("--clock", choices=("manual", "real"), default="real",
                        help="build clock: manual (moved by POST /-/clock/advance) or real")
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="MS",
                        help="delay every GraphQL and log request by MS milliseconds")
    parser.add_argument("--cost-model", choices=("on", "off"), default="on",
                        help="take the time the real PrimeHub server would spend on each "
                             "request (on, the default) or not (off); the back-end calls "
                             "are counted either way (GET /-/stats)")
    parser.add_argument("--cost-scale", type=float, default=1.0, metavar="FLOAT",
                        help="multiply the charged time by FLOAT (default 1.0)")
    parser.add_argument("--errors", choices=("v3", "v4"), default="v3",
                        help="not-found / invalid-name error texts of console v3 or v4")
    parser.add_argument("--graphql-host", default=None, metavar="URL",
                        help="base URL every logEndpoint is built from (PrimeHub's "
                             "GRAPHQL_HOST); default: this server's own base URL")
    parser.add_argument("--tls-cert", default=None, metavar="FILE",
                        help="serve https with this certificate (PEM; needs --tls-key)")
    parser.add_argument("--tls-key", default=None, metavar="FILE",
                        help="private key of --tls-cert (PEM)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.images < 0:
        parser.error("--images must be >= 0")
    if args.groups < 0:
        parser.error("--groups must be >= 0")
    if not args.cost_scale >= 0 or args.cost_scale == float("inf"):
        parser.error("--cost-scale must be a finite number >= 0")
    if args.user_token is not None and args.user_token == args.token:
        parser.error("--user-token must differ from --token")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        httpd = server.bind(args.host, args.port)
    except OSError as exc:
        sys.stderr.write("primehub-emulator: cannot listen on %s:%d: %s\n"
                         % (args.host, args.port, exc.strerror or exc))
        return 1
    scheme = "http"
    if args.tls_cert:
        try:
            httpd.use_tls(args.tls_cert, args.tls_key)
        except (OSError, ValueError) as exc:
            sys.stderr.write("primehub-emulator: cannot use %s / %s: %s\n"
                             % (args.tls_cert, args.tls_key, exc))
            httpd.server_close()
            return 1
        scheme = "https"
    host, port = httpd.server_address[:2]
    shown_host = "[%s]" % host if ":" in host else host
    base_url = "%s://%s:%d" % (scheme, shown_host, port)

    store = Store(args.graphql_host or base_url, errors=args.errors,
                  clock=builds.Clock(args.clock),
                  state_file=args.state, synthetic_images=args.images,
                  synthetic_groups=args.groups)
    service = GraphQLService(store, build_schema())
    app = server.App(store, service, args.token, args.user_token,
                     latency_ms=args.latency_ms, verbose=args.verbose,
                     cost_model=CostModel(args.cost_model == "on", args.cost_scale))
    server.attach(httpd, app)

    def on_signal(signum, frame):
        app.shutdown_async()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sys.stdout.write(base_url + "/api/graphql\n")
    sys.stdout.flush()
    server.wait_forever(httpd)
    store.save()
    return 0
