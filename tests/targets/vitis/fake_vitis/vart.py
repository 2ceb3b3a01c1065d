"""Fake ``vart`` (tests only): int8 NHWC I/O around an onnxruntime float graph; see README.md."""

import itertools
import os
import threading

import numpy as np
import onnxruntime as ort

__version__ = "fake-for-tests"
_jobs = itertools.count(1)


class Tensor:
    def __init__(self, name, dims, fix_point):
        self.name, self.dims, self._attrs = name, list(dims), {"fix_point": int(fix_point)}
        self.dtype = "xint8"

    def get_attr(self, key):
        return self._attrs[key]

    def has_attr(self, key):
        return key in self._attrs


class Runner:
    @staticmethod
    def create_runner(subgraph, mode):
        if mode != "run":
            raise ValueError("fake vart: mode must be 'run', got %r" % mode)
        if subgraph.get_attr("device") != "DPU":
            raise ValueError("fake vart: a DPU runner needs a DPU subgraph, got %s" % subgraph.get_attr("device"))
        return _DPURunner(subgraph.spec, subgraph.folder)


class _DPURunner:
    def __init__(self, spec, folder):
        self.session = ort.InferenceSession(os.path.join(folder, spec["onnx"]), providers=["CPUExecutionProvider"])
        n, c, h, w = spec["input_shape"]
        self.inputs = [Tensor("input", (n, h, w, c), spec["input_fix_point"])]
        outputs = [Tensor("out%d" % k, (s[0], s[2], s[3], s[1]), fp)
                   for k, (s, fp) in enumerate(zip(spec["output_shapes"], spec["output_fix_points"]))]
        self.order = spec.get("output_order") or list(range(len(outputs)))  # a DPU lists outputs in its own order
        self.outputs = [outputs[k] for k in self.order]
        self.pending, self.lock = set(), threading.Lock()

    def get_input_tensors(self):
        return list(self.inputs)

    def get_output_tensors(self):
        return list(self.outputs)

    @staticmethod
    def _check(buffers, tensors, what):
        if len(buffers) != len(tensors):
            raise ValueError("fake vart: %d %s buffers for %d tensors" % (len(buffers), what, len(tensors)))
        for buf, tensor in zip(buffers, tensors):
            if not isinstance(buf, np.ndarray) or buf.dtype != np.int8 or list(buf.shape) != tensor.dims:
                raise ValueError("fake vart: %s buffer must be int8 %s, got %s %s" % (
                    what, tensor.dims, getattr(buf, "dtype", type(buf)), getattr(buf, "shape", "")))

    def execute_async(self, inputs, outputs):
        self._check(inputs, self.inputs, "input")
        self._check(outputs, self.outputs, "output")
        x = inputs[0].astype(np.float32) * 2.0 ** -self.inputs[0].get_attr("fix_point")
        results = self.session.run(None, {self.session.get_inputs()[0].name: x.transpose(0, 3, 1, 2).copy()})
        for buf, tensor, k in zip(outputs, self.outputs, self.order):
            y = results[k].transpose(0, 2, 3, 1) * 2.0 ** tensor.get_attr("fix_point")
            buf[...] = np.clip(np.round(y), -128, 127).astype(np.int8)
        job = next(_jobs)
        with self.lock:
            self.pending.add(job)
        return job, 0

    def wait(self, job):
        job_id = job[0] if isinstance(job, tuple) else job
        with self.lock:
            if job_id not in self.pending:
                raise ValueError("fake vart: wait() on unknown job %r" % (job,))
            self.pending.discard(job_id)
        return 0
