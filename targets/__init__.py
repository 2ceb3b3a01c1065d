"""Deployment targets (OpenVINO, ONNX Runtime, Vitis AI), one module per backend behind one interface."""
