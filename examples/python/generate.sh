#!/usr/bin/env bash
# Generates the Python stubs of the catalog's public gRPC API (proto/consulate/catalog/v1, port
# 8502) into gen/, with Debian's python3-grpc-tools:
#
#   apt-get install python3-grpcio python3-grpc-tools
#   ./generate.sh
#
# Debian's grpc-tools 1.14 carries protoc 3.5.1, which predates proto3 `optional` (protoc 3.15):
# catalog/v1/kv.proto (DeleteRequest.cas) and router/v1 use it, so they are left out here. The
# files below are what register_and_watch.py needs (catalog, health and what they import) plus
# session.proto and event.proto, which 3.5.1 compiles too. README.md shows how to generate every file with a newer
# protoc, and stubs for other languages with buf.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
proto="$here/../../proto"
# Debian's interpreter: python3-grpc-tools installs for it, not for whichever python3 is on PATH.
python=${PYTHON:-/usr/bin/python3}

files=(
  consulate/common/v1/role.proto
  consulate/catalog/v1/query.proto
  consulate/catalog/v1/catalog.proto
  consulate/catalog/v1/health.proto
  consulate/catalog/v1/session.proto
  consulate/catalog/v1/event.proto
)

if ! "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
  echo "generate.sh: $python cannot import grpc_tools: apt-get install python3-grpcio python3-grpc-tools" >&2
  exit 1
fi

# Generate beside gen/ and swap it in, so a failed run leaves the previous stubs whole.
next=$(mktemp -d "$here/gen.next.XXXXXX")
trap 'rm -rf "$next"' EXIT
chmod 755 "$next"
# grpc_tools.protoc adds its own include path for google/protobuf/*.proto (query.proto imports
# duration.proto).
"$python" -m grpc_tools.protoc -I"$proto" --python_out="$next" --grpc_python_out="$next" "${files[@]}"
rm -rf "$here/gen"
mv "$next" "$here/gen"
trap - EXIT
echo "generated $(find "$here/gen" -name '*.py' | wc -l) modules from ${#files[@]} protos into $here/gen"
