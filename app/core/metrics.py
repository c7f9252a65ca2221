"""What a classifier gets right on a test split: accuracy, per-class accuracy, the confusion matrix and the
mean loss, from one plain evaluation pass; and the per-epoch training history that the model card keeps.

The confusion matrix is ``matrix[true][predicted]`` (counts): its rows sum to the class counts and its
diagonal over the total is the accuracy, which is how the card's numbers are checked against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Evaluation:
    """One model on one labelled set."""

    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]  # [true][predicted]
    loss: float  # mean cross-entropy (no label smoothing)

    @property
    def class_counts(self) -> list[int]:
        return [sum(row) for row in self.confusion]


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8-range tensor (N, C, H, W) -> normalised float tensor (the models' preprocessing)."""
    m = torch.tensor(list(mean)).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(list(std)).view(1, -1, 1, 1) * 255.0
    return (x.float() - m) / s


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Counts of (true, predicted) pairs as a ``num_classes`` square list of lists."""
    flat = torch.bincount(y_true.long() * num_classes + y_pred.long(), minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).tolist()  # type: ignore[no-any-return]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, mean: Sequence[float],
             std: Sequence[float], batch_size: int = 500) -> Evaluation:
    """fp32 evaluation of ``model`` on uint8 images ``x`` with labels ``y`` (eval mode, no augmentation)."""
    model.eval()
    preds, loss_sum = [], 0.0
    for i in range(0, len(x), batch_size):
        logits = model(normalize(x[i:i + batch_size], mean, std)).float()
        loss_sum += float(F.cross_entropy(logits, y[i:i + batch_size], reduction="sum"))
        preds.append(logits.argmax(1))
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    cm = confusion_matrix(y, pred, num_classes)
    total = max(1, len(y))
    correct = sum(cm[k][k] for k in range(num_classes))
    per_class = [cm[k][k] / max(1, sum(cm[k])) for k in range(num_classes)]
    return Evaluation(correct / total, per_class, cm, loss_sum / total)


def history_entry(epoch: int, *, test: Evaluation, wall_time_s: float, train_loss: float | None = None,
                  train_accuracy: float | None = None, lr: float | None = None) -> dict[str, float | int | None]:
    """One epoch of the card's ``history`` (rounded as the card stores it; None where it was not recorded)."""
    r4 = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    return {"epoch": epoch, "train_loss": r4(train_loss), "train_accuracy": r4(train_accuracy),
            "test_loss": r4(test.loss), "test_accuracy": r4(test.accuracy),
            "lr": None if lr is None else round(float(lr), 6), "wall_time_s": round(float(wall_time_s), 1)}
