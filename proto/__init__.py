"""The wire (``cipherome.proto``): ``cipherome.proto`` defines the peer-to-peer Exchange stream and job control.

``cipherome_pb2.py`` (the message classes and the service descriptors) is generated and
committed; after editing the .proto, regenerate it from the repository root with
``bash scripts/gen_proto.sh`` (grpcio-tools: ``python -m grpc_tools.protoc -I.
--python_out=. proto/cipherome.proto``). The gRPC side is not generated: ``rpc.py``
builds each RPC's client callable and server handler from the service descriptor, so a
new RPC in the .proto needs no second generated module. Only ``cipherome.mpc``'s gRPC
modules import them.
"""
