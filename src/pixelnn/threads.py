"""Threads: compiled loops side by side, and BLAS libraries kept from spinning on the cores.

Each of the BLAS libraries loaded here (numpy's, scipy's and faiss's OpenBLAS) keeps its own
threads, which spin for a while after every call. One synthesis makes many small BLAS calls (query
coding, global search, ranking) between PyTorch's and the compiled loops' work; their spinning
threads took 60 to 80 ms of a 300 ms synthesis on 2 cores. `one_blas_thread` runs a block with
those libraries limited to one thread each (threadpoolctl); PyTorch's own threads are not touched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache

import torch
from threadpoolctl import ThreadpoolController


def threaded(fn: Callable, items: list) -> list:
    """[fn(item) for item in items], on as many threads as torch uses (torch.get_num_threads)."""
    workers = min(torch.get_num_threads(), len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


@lru_cache(maxsize=1)
def _controller(modules: int) -> ThreadpoolController:
    return ThreadpoolController()  # the libraries loaded by now (a scan takes about 4 ms)


@contextmanager
def one_blas_thread():
    """Within the block, every BLAS library runs on one thread (restored after).

    The scan of loaded libraries is redone once more Python modules are imported, since an import
    can bring a BLAS library of its own (OpenCV's, with the face normals)."""
    with _controller(len(sys.modules)).limit(limits=1, user_api="blas"):
        yield
