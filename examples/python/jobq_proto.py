"""Generates the jobq gRPC code from ../../proto at import time.

The generated modules go to a folder beside this file (`_generated/`, not
committed) and are rebuilt whenever a .proto is newer than them.
"""

import importlib
import os
import sys

from grpc_tools import protoc

import grpc_tools

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = [os.path.join(PROTO_ROOT, "jobq", "v1", name) for name in ("jobq.proto", "admin.proto", "schedules.proto")]
OUT = os.path.join(HERE, "_generated")
WELL_KNOWN = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


def _generate():
    stamps = [os.path.join(OUT, "jobq", "v1", os.path.basename(p).replace(".proto", "_pb2.py")) for p in PROTOS]
    newest = max(os.path.getmtime(p) for p in PROTOS)
    if all(os.path.exists(s) and os.path.getmtime(s) >= newest for s in stamps):
        return
    os.makedirs(OUT, exist_ok=True)
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{WELL_KNOWN}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        *PROTOS,
    ])
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTOS} with exit code {code}")


_generate()
sys.path.insert(0, OUT)
jobq_pb2 = importlib.import_module("jobq.v1.jobq_pb2")
jobq_pb2_grpc = importlib.import_module("jobq.v1.jobq_pb2_grpc")
admin_pb2 = importlib.import_module("jobq.v1.admin_pb2")
schedules_pb2 = importlib.import_module("jobq.v1.schedules_pb2")
schedules_pb2_grpc = importlib.import_module("jobq.v1.schedules_pb2_grpc")
