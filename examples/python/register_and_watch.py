#!/usr/bin/python3
"""Registers an instance of `web` in a Consulate catalog through its public gRPC API (port 8502),
then watches the health of `web` and prints its instances each time they change.

    ./generate.sh                                        # once: the stubs, into gen/
    /usr/bin/python3 register_and_watch.py --updates 2 --timeout 60

The first message of the watch is the instances as they are now; every later one is the whole list
again after a change. Exit status: 0 after --updates messages, or when --timeout ends a watch that
had no --updates; 1 when the catalog refuses or ends the call, or the timeout comes before
--updates messages; 130 on Ctrl-C.
"""
import argparse
import os
import sys

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
try:
    from consulate.catalog.v1 import catalog_pb2, catalog_pb2_grpc, health_pb2, health_pb2_grpc
except ImportError as err:
    sys.exit(f"register_and_watch.py: the generated stubs are missing ({err}): run ./generate.sh first")

# dc1's catalog under `make up`.
DEFAULT_ADDR = "127.0.1.10:8502"
# Every unary call gets a deadline; the watch gets --timeout.
REGISTER_TIMEOUT_S = 10.0

# The worst check wins, as in Consul's AggregatedStatus; a status this client does not know counts
# as critical, and an instance without checks is passing.
_SEVERITY = {
    catalog_pb2.HEALTH_STATUS_PASSING: 0,
    catalog_pb2.HEALTH_STATUS_WARNING: 1,
    catalog_pb2.HEALTH_STATUS_CRITICAL: 2,
}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Register an instance of a service in a Consulate catalog over gRPC, then watch the service's instances."
    )
    parser.add_argument(
        "--addr",
        default=os.environ.get("CONSULATE_GRPC_ADDR", DEFAULT_ADDR),
        help=f"the catalog's gRPC address, host:port (default: $CONSULATE_GRPC_ADDR, else {DEFAULT_ADDR})",
    )
    parser.add_argument("--service", default="web", help="the service to register and watch (default: %(default)s)")
    parser.add_argument("--service-id", default="web-python", help="the instance's ID on its node (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="the instance's port (default: %(default)s)")
    parser.add_argument("--node", default="python-example", help="the node to register the instance on (default: %(default)s)")
    parser.add_argument("--node-address", default="127.0.0.1", help="the node's address (default: %(default)s)")
    parser.add_argument("--passing-only", action="store_true", help="watch only instances whose every check passes")
    parser.add_argument("--updates", type=int, default=0, help="exit 0 after this many messages, the first included (default: no limit)")
    parser.add_argument("--timeout", type=float, default=0, help="end the watch after this many seconds (default: no limit)")
    args = parser.parse_args(argv)
    if args.updates < 0:
        parser.error("--updates must be 0 (no limit) or more")
    if args.timeout < 0:
        parser.error("--timeout must be 0 (no limit) or more seconds")
    return args


def register(catalog, args):
    """Registers the node and the instance with one passing check; answers the commit index."""
    request = catalog_pb2.RegisterRequest(
        node=args.node,
        address=args.node_address,
        service=catalog_pb2.ServiceRegistration(id=args.service_id, name=args.service, port=args.port, tags=["python"]),
        # The catalog runs no checks: whoever registers one reports its state, here once.
        checks=[
            catalog_pb2.CheckRegistration(
                check_id=f"service:{args.service_id}",
                name=f"{args.service} alive",
                status=catalog_pb2.HEALTH_STATUS_PASSING,
                service_id=args.service_id,
            )
        ],
    )
    # wait_for_ready: a catalog that is still starting is waited for, within the deadline.
    return catalog.Register(request, timeout=REGISTER_TIMEOUT_S, wait_for_ready=True).index


def aggregated_status(checks):
    worst = max((_SEVERITY.get(check.status, 2) for check in checks), default=0)
    return ("passing", "warning", "critical")[worst]


def describe(sequence, message, service):
    count = len(message.entries)
    lines = [f"[{sequence}] index {message.index}: {count} instance{'' if count == 1 else 's'} of {service}"]
    for entry in message.entries:
        # An instance without its own address is reached at its node's (Consul's ServiceAddress).
        host = entry.service.address or entry.node.address
        if ":" in host:
            host = f"[{host}]"
        lines.append(f"  {entry.service.id} on {entry.node.name} at {host}:{entry.service.port}: {aggregated_status(entry.checks)}")
    return "\n".join(lines)


def watch(health, args):
    """Prints each message of the watch; answers the exit status."""
    request = health_pb2.WatchServiceHealthRequest(service=args.service, passing_only=args.passing_only)
    stream = health.WatchServiceHealth(request, timeout=args.timeout or None)
    seen = 0
    try:
        for message in stream:
            seen += 1
            # One write per message, flushed: a pipe reader sees whole lists as they come.
            print(describe(seen, message, args.service), flush=True)
            if seen == args.updates:
                stream.cancel()
                return 0
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            if args.updates == 0:
                return 0
            print(f"timed out after {args.timeout:g} s with {seen} of {args.updates} messages", file=sys.stderr)
            return 1
        # UNAVAILABLE when the catalog shuts down: a long-lived client would watch again, on
        # another catalog.
        print(f"the watch ended: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print(f"the catalog ended the watch after {seen} messages", file=sys.stderr)
    return 1


def main(argv):
    args = parse_args(argv)
    with grpc.insecure_channel(args.addr) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        health = health_pb2_grpc.HealthServiceStub(channel)
        try:
            index = register(catalog, args)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                print(f"no catalog answered at {args.addr} within {REGISTER_TIMEOUT_S:g} s: is one running there (`make up` starts dc1's at {DEFAULT_ADDR})?", file=sys.stderr)
            else:
                # UNAVAILABLE "No cluster leader" passes once consensus elects one: run again.
                print(f"register at {args.addr} failed: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
        print(f"registered {args.service_id} ({args.service}) on node {args.node} at index {index}; watching {args.service} on {args.addr}", flush=True)
        try:
            return watch(health, args)
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
