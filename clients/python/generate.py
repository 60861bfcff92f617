"""Generates the gRPC code of `src/jobq/v1/` from the repository's `proto/`.

    python generate.py          # write it
    python generate.py --check  # fail if what is committed differs

The generated modules are committed, so installing the package needs no
protoc; CI runs the check, so they never drift from `proto/`.
"""

import argparse
import filecmp
import os
import shutil
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = [
    os.path.join("jobq", "v1", name) for name in ("jobq.proto", "admin.proto", "schedules.proto")
]
TARGET = os.path.join(HERE, "src", "jobq", "v1")
WELL_KNOWN = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


def generate(out: str) -> None:
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{WELL_KNOWN}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *(os.path.join(PROTO_ROOT, p) for p in PROTOS),
        ]
    )
    if code != 0:
        sys.exit(f"protoc failed with exit code {code}")
    # The proto package is jobq.v1, so the modules land in jobq/v1/ and
    # import each other as `jobq.v1`: inside this package, as they should.
    with open(os.path.join(out, "jobq", "v1", "__init__.py"), "w") as init:
        init.write('"""Generated from proto/jobq/v1 by generate.py: do not edit."""\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        generate(out)
        fresh = os.path.join(out, "jobq", "v1")
        if args.check:
            names = sorted(os.listdir(fresh))
            committed = sorted(n for n in os.listdir(TARGET) if not n.startswith("__pycache__"))
            _, mismatch, errors = filecmp.cmpfiles(fresh, TARGET, names, shallow=False)
            if names != committed or mismatch or errors:
                sys.exit(
                    "src/jobq/v1 does not match proto/: run `python generate.py` "
                    f"(differs: {mismatch + errors}, files: {committed} vs {names})"
                )
            print("src/jobq/v1 matches proto/")
            return
        shutil.rmtree(TARGET, ignore_errors=True)
        shutil.copytree(fresh, TARGET)
        print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
