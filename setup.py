"""Builds the forwarder's cffi data plane (forwarder._dataplane) next to pyproject.toml's metadata."""
from setuptools import setup

setup(cffi_modules=["forwarder/_dataplane_build.py:ffibuilder"])
