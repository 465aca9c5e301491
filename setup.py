"""Builds the C extension of create_pretraining_data's loops (metadata and options: setup.cfg).

The extension is optional: without a working C compiler the package still installs, and its
kernels fall back to numba, which compiles them on their first run (see
bert_tf/pretraining_data/kernels.py).
"""

from setuptools import Extension
from setuptools import setup

setup(ext_modules=[Extension("bert_tf.pretraining_data._kernels", ["bert_tf/pretraining_data/_kernels.c"],
                             py_limited_api=True, optional=True)])
