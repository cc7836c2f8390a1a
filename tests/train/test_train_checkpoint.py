"""anygpt.train.checkpoint: tree flattening, RNG states, the checkpoint folder and its checks.
(Named test_train_checkpoint.py: tests/lm/test_checkpoint.py already holds the basename.)"""

import json
import random

import numpy as np
import pytest
import torch

from anygpt.errors import CheckpointError
from anygpt.train.checkpoint import (CheckpointFolder, check_optimizer_shapes, flatten_tree, rng_state,
                                     set_rng_state, unflatten_tree)


@pytest.fixture(autouse=True)
def _keep_rng():
    """load() restores saved RNG states; give the other tests theirs back."""
    saved = rng_state()
    yield
    set_rng_state(*saved)


def adam_step():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return model, opt


def test_flatten_round_trip_keeps_int_keys_tuples_and_scalars():
    tree = {"state": {0: {"step": torch.tensor(2.0), "exp_avg": torch.ones(2, 3)}},
            "param_groups": [{"betas": (0.9, 0.99), "params": [0], "name": None}]}
    tensors, skeleton = flatten_tree(tree, "opt")
    assert set(tensors) == {"opt/state/0/step", "opt/state/0/exp_avg"}
    back = unflatten_tree(tensors, json.loads(json.dumps(skeleton)))
    assert back["param_groups"] == tree["param_groups"]
    assert torch.equal(back["state"][0]["exp_avg"], torch.ones(2, 3))
    with pytest.raises(CheckpointError, match="cannot store a set at opt/x"):
        flatten_tree({"x": {1}}, "opt")


def test_rng_state_restores_torch_numpy_and_python_draws():
    tensors, meta = rng_state()
    first = (torch.rand(3), np.random.rand(), random.random())
    set_rng_state(tensors, json.loads(json.dumps(meta)))
    again = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_save_load_latest_and_keep(tmp_path):
    model, opt = adam_step()
    folder = CheckpointFolder(tmp_path, keep=2)
    for step in (1, 2, 3):
        folder.save(step, {"model": model.state_dict()}, opt.state_dict(), {"step": step, "elapsed": 1.5})
    assert [p.name for p in folder.all()] == ["step-00000002", "step-00000003"]
    assert folder.latest() == tmp_path / "checkpoints" / "step-00000003"
    modules, opt_state, state = CheckpointFolder.load(folder.latest())
    assert torch.equal(modules["model"]["weight"], model.weight.detach())
    assert state["step"] == 3 and state["modules"] == ["model"]
    fresh = torch.optim.Adam(model.parameters(), lr=0.1)
    fresh.load_state_dict(opt_state)
    assert torch.equal(fresh.state[model.weight]["exp_avg"], opt.state[model.weight]["exp_avg"])
    check_optimizer_shapes(fresh, folder.latest())


@pytest.mark.parametrize("change, match", [({"step": 7}, "not the folder's step"),
                                           ({"elapsed": -1}, "elapsed"),
                                           ({"modules": ["../model"]}, "leads out of")])
def test_load_refuses_tampered_state(tmp_path, change, match):
    model, opt = adam_step()
    path = CheckpointFolder(tmp_path).save(3, {"model": model.state_dict()}, opt.state_dict(), {"step": 3})
    state = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**state, **change}))
    with pytest.raises(CheckpointError, match=match):
        CheckpointFolder.load(path)


def test_check_optimizer_shapes_refuses_wrong_shape(tmp_path):
    model, opt = adam_step()
    opt.state[model.weight]["exp_avg"] = torch.zeros(3, 2)
    with pytest.raises(CheckpointError, match=r"'exp_avg' has shape \(3, 2\), its parameter \(2, 3\)"):
        check_optimizer_shapes(opt, tmp_path)
