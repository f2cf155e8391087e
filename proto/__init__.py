"""The wire (``cipherome.proto``): ``cipherome.proto`` defines the peer-to-peer Exchange stream and job control.

The generated modules ``cipherome_pb2.py`` and ``cipherome_pb2_grpc.py`` are
committed; after editing the .proto, regenerate them from the repository root with
``bash scripts/gen_proto.sh`` (grpcio-tools: ``python -m grpc_tools.protoc -I.
--python_out=. --grpc_python_out=. proto/cipherome.proto``, then the import in
``cipherome_pb2_grpc.py`` made package-relative). Only ``cipherome.mpc``'s gRPC
modules import them.
"""
