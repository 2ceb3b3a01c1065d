"""Training Darknet cfgs in PyTorch: the ``[yolo]`` loss, the ``[net]`` rate policy, the loop."""
