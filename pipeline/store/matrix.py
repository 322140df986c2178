"""Feature columns as matrices: dense float32 rows, a tensor set's bfloat16 bits read back as float32, or a
sparse column as a scipy CSR matrix (and as a torch sparse tensor)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def feature_matrix(column: pa.ChunkedArray | pa.Array, dim: int | None = None):
    """fixed_size_list<float32>[dim] column (or a tensor set's bfloat16 bits) -> contiguous float32
    (n, dim) array; a sparse column
    (indices + values, see ``schema.SPARSE_TYPE``) -> scipy CSR matrix (n, dim), ``dim`` required."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_struct(array.type):
        return _csr(array, dim)
    dim = array.type.list_size
    if len(array) == 0:
        return np.zeros((0, dim), np.float32)
    values = array.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    if values.dtype == np.uint16:  # a tensor set's bfloat16 bits
        from ..registry import from_bf16_bits

        return from_bf16_bits(values)
    return values.astype(np.float32, copy=False)


def _csr(array: pa.StructArray, dim: int | None):
    import scipy.sparse as sp

    if dim is None:
        raise ValueError("a sparse feature column needs its width (the feature set's dim)")
    indices, values = array.flatten()  # children as seen through the struct's own slice
    offsets = indices.offsets.to_numpy()
    start = offsets[0]
    cols = indices.values.to_numpy()[start:offsets[-1]]
    data = values.values.to_numpy(zero_copy_only=False)[start:offsets[-1]].astype(np.float32, copy=False)
    return sp.csr_matrix((data, cols, offsets - start), shape=(len(array), dim))


def csr_tensor(x, device: str = "cpu") -> Any:
    """A scipy CSR matrix as a torch sparse CSR tensor (float32, int64 indices)."""
    import warnings

    import torch

    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products mmfeat uses are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(x.indptr.astype(np.int64)),
                                       torch.from_numpy(x.indices.astype(np.int64)),
                                       torch.from_numpy(x.data.astype(np.float32)), size=x.shape).to(device)
