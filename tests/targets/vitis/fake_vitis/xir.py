"""Fake ``xir`` (tests only): a "fake xmodel" is a JSON file; see README.md."""

import json
import os


class Subgraph:
    def __init__(self, name, attrs=None, children=(), spec=None, folder=""):
        self._name, self._attrs, self._children = name, dict(attrs or {}), list(children)
        self.spec, self.folder = spec, folder

    def get_name(self):
        return self._name

    def has_attr(self, key):
        return key in self._attrs

    def get_attr(self, key):
        if key not in self._attrs:
            raise KeyError("fake xir: subgraph %s has no attribute %r" % (self._name, key))
        return self._attrs[key]

    def toposort_child_subgraph(self):
        return list(self._children)


class Graph:
    def __init__(self, spec, folder):
        self.spec, self.folder = spec, folder

    @staticmethod
    def deserialize(path):
        with open(path) as fh:
            spec = json.load(fh)
        if spec.get("format") != "fake-xmodel/1":
            raise ValueError("fake xir: %s is not a fake xmodel" % path)
        return Graph(spec, os.path.dirname(os.path.abspath(path)))

    def get_root_subgraph(self):
        children = [Subgraph(s["name"], s["attrs"], spec=self.spec, folder=self.folder) for s in self.spec["subgraphs"]]
        return Subgraph("root", {}, children)
