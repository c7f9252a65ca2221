"""Feature visualization speed, as ratios measured in one run.

1. our optimisation steps per second / the raw forward+backward rate of the same model and image
   size (goal >= 0.9: the parameterisation and transforms cost little);
2. our time for 512 steps of a channel objective / Lucent's (`torch-lucent`) on the same model,
   channel and number of steps (goal <= 1.0).

Lucent is needed only here: install it outside the project, e.g.
    pip install --target /tmp/lucent --no-deps torch-lucent decorator "kornia==0.4.1" && \
    pip install --target /tmp/lucent ipython
    PYTHONPATH=/tmp/lucent .venv/bin/python bench/featvis.py [--model cifarnet --layer block3.conv2 --channel 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import ROOT  # noqa: E402
from app.core import featvis as fv  # noqa: E402
from app.core.zoo import Zoo, discover  # noqa: E402


def raw_rate(model: torch.nn.Module, layer: str, channel: int, size: int, steps: int) -> float:
    """Forward + backward passes per second on a (1, 3, size, size) input, loss on the channel."""
    from app.core.probe import capture

    x = torch.rand(1, 3, size, size, requires_grad=True)
    with capture(model, [layer], keep_grad=True) as acts:
        for i in range(steps + 2):
            if i == 2:
                t0 = time.perf_counter()
            model(x)
            loss = -acts[layer][:, channel].mean()
            (g,) = torch.autograd.grad(loss, x)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifarnet")
    ap.add_argument("--layer", default="block3.conv2")
    ap.add_argument("--channel", type=int, default=7)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    zoo = Zoo.load([s for s in discover(ROOT / "models", effnet=a.model == "efficientnet-lite0") if s.name == a.model])
    lm = zoo.get(a.model)
    m, p = lm.module, lm.spec.preprocess
    size = p.crop
    obj = fv.Objective("channel", a.layer, a.channel)
    s = fv.default_settings(size, steps=a.steps)

    work = fv.working_copy(m)  # what the feature-visualization service optimises against
    # The machine is shared and noisy: interleave the three measurements in rounds of the same
    # number of steps and report the median ratios.
    chunk = min(a.steps, 128)
    short = fv.default_settings(size, steps=chunk)
    rounds = []
    for _ in range(a.rounds):
        raw = raw_rate(m, a.layer, a.channel, size, chunk)
        raw_work = raw_rate(work, a.layer, a.channel, size, chunk)
        t0 = time.perf_counter()
        fv.render(work, p.mean, p.std, obj, short, input_size=size)
        rate = chunk / (time.perf_counter() - t0)
        rounds.append((rate / raw, rate / raw_work, raw, raw_work, rate))
    served_ratio = statistics.median(r[0] for r in rounds)
    work_ratio = statistics.median(r[1] for r in rounds)
    raw, raw_work, ours_rate = (statistics.median(r[i] for r in rounds) for i in (2, 3, 4))
    t0 = time.perf_counter()
    r = fv.render(work, p.mean, p.std, obj, s, input_size=size)
    ours = time.perf_counter() - t0
    print(f"model {a.model}, {a.layer}:{a.channel}, {a.rounds} rounds of {chunk} steps at {size}x{size} (medians)")
    print(f"raw forward+backward of the served model: {raw:.1f} /s; ours: {ours_rate:.1f} steps/s; "
          f"ratio {served_ratio:.2f} (goal >= 0.9)")
    print(f"raw forward+backward of the channels-last working copy: {raw_work:.1f} /s; "
          f"ratio {work_ratio:.2f} (the cost of the parameterisation and transforms alone)")
    print(f"objective {r.history[0]:.3g} -> {r.history[-1]:.3g}")
    try:
        from lucent.optvis import param, render
    except ImportError:
        print("Lucent not importable: install it as the docstring says to get the second ratio")
        return
    lucent_layer = a.layer.replace(".", "_")
    t0 = time.perf_counter()
    render.render_vis(m, f"{lucent_layer}:{a.channel}", thresholds=(a.steps,), show_image=False, progress=False,
                      fixed_image_size=size, param_f=lambda: param.image(size, fft=True, decorrelate=True))
    lucent = time.perf_counter() - t0
    print(f"512-step time: ours {ours:.1f} s, Lucent {lucent:.1f} s; ratio ours/Lucent {ours / lucent:.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
