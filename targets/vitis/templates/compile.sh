#!/bin/bash
# Compile the quantized DPU graph for the @BOARD@ DPU; written by `edgeprune deploy vitis`.
# Runs inside the Vitis AI image (conda env vitis-ai-pytorch). The log's
# "DPU subgraph number N" line is what edgeprune checks: N must be 1.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p compiled
vai_c_xir -x @XMODEL@ -a @ARCH@ -o compiled -n @NAME@ 2>&1 | tee @LOG@
