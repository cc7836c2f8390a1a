"""anygpt.eval.arrays: tensors of any dtype and array-likes as float64 numpy arrays."""

import numpy as np
import torch

from anygpt.eval.arrays import as_float64


def test_tensors_and_lists_become_float64():
    x = as_float64(torch.tensor([1.5, -2.0], dtype=torch.bfloat16, requires_grad=True))
    assert x.dtype == np.float64 and x.tolist() == [1.5, -2.0]
    assert as_float64(torch.arange(3)).tolist() == [0.0, 1.0, 2.0]
    assert as_float64([[1, 2]]).shape == (1, 2) and as_float64(np.float32(0.25)).item() == 0.25
