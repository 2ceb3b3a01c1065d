"""Fake ``vai_c_xir`` (tests only): logs its argv to $FAKE_TOOLS_LOG, writes a placeholder xmodel and
prints the compiler's summary lines with $FAKE_DPU_SUBGRAPHS DPU subgraphs (default 1)."""

import argparse
import json
import os
import sys

with open(os.environ["FAKE_TOOLS_LOG"], "a") as fh:
    fh.write(json.dumps({"tool": "vai_c_xir", "argv": sys.argv[1:], "cwd": os.getcwd()}) + "\n")
parser = argparse.ArgumentParser()
for flag in ("-x", "-a", "-o", "-n"):
    parser.add_argument(flag, required=True)
args = parser.parse_args()
if not os.path.isfile(args.x):
    print("[UNILOG][FATAL][XIR_FILE_NOT_EXIST] %s" % args.x)
    sys.exit(1)
dpu = int(os.environ.get("FAKE_DPU_SUBGRAPHS", "1"))
os.makedirs(args.o, exist_ok=True)
with open(os.path.join(args.o, args.n + ".xmodel"), "w") as fh:
    fh.write("fake compiled xmodel (edgeprune tests)\n")
print("[UNILOG][INFO] Target architecture: DPUCZDX8G_ISA1_B4096")
print("[UNILOG][INFO] Graph name: DPUGraph, with op num: 300")
print("[UNILOG][INFO] Begin to compile...")
print("[UNILOG][INFO] Total device subgraph number %d, DPU subgraph number %d" % (dpu * 2 + 1, dpu))
print("[UNILOG][INFO] Compile done.")
