#!/usr/bin/env bash
# Regenerate proto/cipherome_pb2.py (committed) from proto/cipherome.proto.
# No *_pb2_grpc.py: proto/rpc.py builds the client callables and the server handlers
# from the service descriptor inside cipherome_pb2.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I. --python_out=. proto/cipherome.proto
