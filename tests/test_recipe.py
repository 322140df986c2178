"""The network fine-tune's recipe (heads/recipe.py): resolution, budget, schedule, layer-wise rates."""
import math

import pytest
import torch

from pipeline.heads.recipe import (MIN_EPOCHS, MIN_SIZE, WarmupCosine, fitting_size, layer_rates, lower_size,
                                   plan_budget)


def test_training_resolution_fits_the_images():
    assert fitting_size([(8, 8)] * 5, 240) == MIN_SIZE  # tiny images: upsampled to 64 px, not 240
    assert fitting_size([(32, 32)] * 3 + [(500, 500)], 240) == 64  # the median, not the mean
    assert fitting_size([(48, 60)] * 3, 240) == 96  # twice the shorter side, a multiple of 32
    assert fitting_size([(160, 213)] * 3, 240) == 240  # large images: the model's (or the set's) own size
    assert fitting_size([(160, 213)] * 3, 96) == 96
    assert fitting_size([], 240) == 240
    assert [lower_size(s) for s in (240, 160, 96, 64)] == [192, 128, 64, 64]


def test_the_budget_chooses_epochs_then_a_lower_resolution():
    per_image = {240: 0.09, 192: 0.07, 128: 0.025, 96: 0.016, 64: 0.008}  # seconds per training image
    # 1,000 training and 200 validation images, 2,400 passed once; ten minutes
    plan = plan_budget(per_image.get, 240, 1000, 200, 2400, 30, 600.0)
    assert plan.sizes_tried == [240, 192, 128] and plan.size == 128 and MIN_EPOCHS <= plan.epochs < 30
    assert plan.epochs == int((600 - plan.once_s) // plan.epoch_s) and plan.describe()["budget_limited"]
    roomy = plan_budget(per_image.get, 64, 1000, 200, 2400, 30, 600.0)
    assert (roomy.size, roomy.epochs, roomy.describe()["budget_limited"]) == (64, 30, False)
    unbounded = plan_budget(per_image.get, 240, 1000, 200, 2400, 12, None)
    assert (unbounded.size, unbounded.epochs, unbounded.describe()["budget_minutes"]) == (240, 12, None)
    # no epoch fits even at the lowest resolution: zero epochs (the head is then the probe), said so
    broke = plan_budget(per_image.get, 96, 1000, 200, 2400, 30, 5.0)
    assert broke.size == MIN_SIZE and broke.epochs == 0 and broke.describe()["budget_limited"]
    few = plan_budget(per_image.get, 240, 1000, 200, 2400, 3, 1e6)  # max_epochs under MIN_EPOCHS: size kept
    assert (few.size, few.epochs) == (240, 3)


def test_warmup_then_cosine_to_zero_and_shortened_by_the_budget():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    schedule = WarmupCosine(opt, total_steps=100, steps_per_epoch=10)
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)  # one epoch of linear warm-up
    assert all(a >= b for a, b in zip(rates[9:], rates[10:])) and rates[-1] < 0.01
    assert rates[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    opt = torch.optim.SGD([p], lr=1.0)
    schedule = WarmupCosine(opt, total_steps=100, steps_per_epoch=10)
    schedule.shorten(5)  # the budget allows five epochs: the cosine now ends at step 50
    for _ in range(50):
        opt.step()
        schedule.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_layer_wise_rates_decay_from_the_classifier_down_and_cover_every_tuned_tensor():
    from pipeline.extractors.image.models import load_backbone
    from pipeline.extractors.image.surgery import surgery

    adapter = surgery(load_backbone("efficientnet_lite0", None), "efficientnet_lite0")
    fc, _ = adapter.swap_classifier(3)
    adapter.unfreeze(None)
    groups = adapter.depth_groups()
    rates = layer_rates(groups, list(fc.parameters()), 1e-3, 0.9, 0.0)
    assert rates[-1]["lr"] == 1e-3 and rates[-2]["lr"] == pytest.approx(0.9e-3)
    assert all(a["lr"] < b["lr"] for a, b in zip(rates, rates[1:]))
    ids = [id(p) for g in rates for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(adapter.model.parameters()))  # each tensor once, none left out
    adapter.model.requires_grad_(False)
    adapter.unfreeze(2)  # the last two blocks and the head conv: only they are grouped
    tuned = sum(len(g) for g in adapter.depth_groups())
    assert tuned == len([p for n, p in adapter.model.named_parameters() if p.requires_grad and not n.startswith("_fc")])
