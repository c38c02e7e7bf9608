"""The training state on its own: `save` writes where a run stands (with the optimisers, the
scaler and the model's extra state) into a checkpoint, and `restore` puts all of it back into a
freshly built model and returns the same `TrainingState`, without a trainer around them."""
from __future__ import annotations

import torch

from img2img.runs import checkpoints, folders as runs
from img2img.training.state import TrainingState, restore, save
from img2img_cyclegan import CycleGAN


def _model(seed: int) -> tuple[CycleGAN, dict, torch.amp.GradScaler]:
    torch.manual_seed(seed)
    model = CycleGAN(CycleGAN.Options(**CycleGAN.smoke_options))
    optimizers = {"g": torch.optim.Adam(model.generators.parameters()),
                  "d": torch.optim.Adam(model.discriminators.parameters())}
    return model, optimizers, torch.amp.GradScaler("cpu", enabled=False)


def test_restore_gives_back_what_save_wrote(tmp_path):
    model, optimizers, scaler = _model(0)
    loss = sum(p.sum() for p in model.parameters())
    loss.backward()
    for optimizer in optimizers.values():
        optimizer.step()  # so the optimisers have state to save
    model.pools["a"].query(torch.rand(2, 3, 8, 8))  # extra state: an image pool
    run = runs.create_run(tmp_path, "state")
    state = TrainingState(step=7, epoch=2, batch_in_epoch=3, best=0.25)
    weights = save(run, state, model, optimizers, scaler, None, {"model": "cyclegan"},
                   world=1, items=10, keep=0)
    assert weights == checkpoints.resolve_checkpoint(run)

    fresh, fresh_optimizers, fresh_scaler = _model(1)
    restored = restore(weights, fresh, fresh_optimizers, fresh_scaler, None,
                       device=torch.device("cpu"), world=1, items=10, is_main=True)
    assert restored == state
    saved, loaded = model.state_dict(), fresh.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert fresh.extra_state().keys() == model.extra_state().keys()
    assert torch.equal(fresh.pools["a"].state_dict()["images"],
                       model.pools["a"].state_dict()["images"])
    assert fresh_optimizers["g"].state_dict()["state"].keys() == \
        optimizers["g"].state_dict()["state"].keys()
