"""Darknet cfg parser, .weights reader/writer, PyTorch code generator and OpenVINO IR build."""
