import numpy as np
import torch
from threadpoolctl import threadpool_info

from pixelnn.threads import one_blas_thread, threaded


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_one_blas_thread_limits_every_blas_library_and_restores_them():
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS is loaded
    before = blas_threads()
    assert before  # there is a BLAS library to limit
    with one_blas_thread():
        assert blas_threads() == {1}
        n_torch = torch.get_num_threads()
    assert blas_threads() == before
    assert torch.get_num_threads() == n_torch  # PyTorch's own threads are not touched


def test_threaded_keeps_the_order_of_the_items():
    assert threaded(lambda i: i * i, list(range(50))) == [i * i for i in range(50)]
    assert threaded(str, []) == []


def test_one_blas_thread_also_limits_a_library_imported_after_its_first_use():
    with one_blas_thread():
        pass
    import cv2  # brings an OpenBLAS of its own

    cv2.setNumThreads(cv2.getNumThreads())
    with one_blas_thread():
        assert blas_threads() == {1}
