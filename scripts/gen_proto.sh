#!/usr/bin/env bash
# Regenerate proto/cipherome_pb2.py and proto/cipherome_pb2_grpc.py (committed) from proto/cipherome.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. proto/cipherome.proto
# protoc writes "from proto import cipherome_pb2"; the package is cipherome.proto
sed -i 's/^from proto import cipherome_pb2/from . import cipherome_pb2/' proto/cipherome_pb2_grpc.py
