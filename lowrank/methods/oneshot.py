"""One-shot projections at a fixed rank, then fine-tuning: the "not iterative" rows of the paper's Table 2.

``svd`` (Eq. 4), ``fwsvd`` (Eq. 5 with row-summed diagonal Fisher), ``tfwsvd`` (Eq. 5 with the full
diagonal Fisher; multi-start ALS run until a sweep changes the objective by at most ``tfwsvd_tol``
relative, :func:`lowrank.linalg.element_weighted_projection`), ``asvd`` (Eq. 7, activation-aware). The projection happens once, before the first
step, on the pre-trained base; the rest of the budget fine-tunes.

FWSVD's axis (``fwsvd_axis``): Hsu et al. write a layer as ``y = x W`` with ``W`` (in × out) and weight its
rows; the paper sums the diagonal Fisher "column-wise, making the approximation identical for each row".
With PyTorch's ``(out, in)`` layout, ``rows`` (default) gives each output neuron one weight (the Fisher
summed over the inputs) and ``columns`` each input one weight — the other reading, kept as an ablation.

What trains (``train``):

* ``factors`` (default): the compiled form ``A·B`` with both factors trainable — the usual
  fine-tuning of a factorised model, ``k(m + n)`` trainable numbers per layer;
* ``core``: the paper's loops' form, ``U S Vᵀ`` with ``U``, ``V`` frozen and only ``S`` trained
  (``k²`` trainable per layer); compiled to ``A·B`` at the end.

Every non-target parameter (embeddings, norms, attention when only MLPs are targets, the head)
trains in both cases, as in every other method.
"""
from __future__ import annotations

from typing import Any

import torch

from ..activations import input_second_moments
from ..data import move_batch
from ..fisher import default_forward, diagonal_fisher
from ..surgery import compile_model, compress_model
from ..utils import make_generator
from .base import Method, register, validate_choice, validate_positive_int

__all__ = ["OneShot"]


@register("svd", "fwsvd", "tfwsvd", "asvd")
class OneShot(Method):
    keys = {
        "rank": None,
        "train": "factors",
        "fisher_labels": "true",
        "fwsvd_axis": "rows",
        "tfwsvd_tol": 1e-6,
        "asvd_ridge": 1e-4,
    }
    only_for = {"fisher_labels": ("fwsvd", "tfwsvd"), "fwsvd_axis": ("fwsvd",), "tfwsvd_tol": ("tfwsvd",), "asvd_ridge": ("asvd",)}

    @classmethod
    def validate(cls, name: str, cfg: dict[str, Any]) -> None:
        super().validate(name, cfg)
        c = {**cls.keys, **cfg}
        validate_positive_int("rank", c["rank"])
        validate_choice("train", c["train"], ("factors", "core"))
        validate_choice("fisher_labels", c["fisher_labels"], ("true", "empirical"))
        validate_choice("fwsvd_axis", c["fwsvd_axis"], ("rows", "columns"))
        tol = c["tfwsvd_tol"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            raise ValueError(f"tfwsvd_tol={tol!r}; must be a number in [0, 1) (the relative-change stopping rule)")

    def setup(self, trainer) -> bool:
        c = {**self.keys, **self.cfg}
        names = trainer.target_names
        fisher = moments = None
        forward = lambda model, batch: default_forward(model, move_batch(batch, trainer.device))  # noqa: E731
        if self.name in ("fwsvd", "tfwsvd"):
            fisher = diagonal_fisher(trainer.model, trainer.calibration_loader(), names, forward,
                                     likelihood="categorical", labels=c["fisher_labels"],
                                     generator=make_generator(trainer.cfg["random_state"]), dtype=torch.float64)
            fisher = {n: f.to(trainer.model.get_submodule(n).weight.dtype) for n, f in fisher.items()}
        if self.name == "asvd":
            moments = input_second_moments(
                trainer.model, trainer.calibration_loader(), {n: trainer.model.get_submodule(n) for n in names},
                lambda model, batch: trainer.forward(model, move_batch(batch, trainer.device)),
                mask=lambda b: b.get("attention_mask") if isinstance(b, dict) else None)
        kwargs = ({"tol": c["tfwsvd_tol"]} if self.name == "tfwsvd" else {"ridge": c["asvd_ridge"]}
                  if self.name == "asvd" else {"axis": c["fwsvd_axis"]} if self.name == "fwsvd" else {})
        rep = compress_model(trainer.model, {"include": names}, method=self.name, rank=c["rank"], fisher=fisher,
                             second_moments=moments, form="factorized" if c["train"] == "factors" else "low_rank",
                             projection_kwargs=kwargs)
        trainer.sync_structure(names)
        self.skipped = rep.skipped
        self.record(trainer, trainer.module_ranks(), event="project")
        return True

    def finalize(self, trainer) -> None:
        compile_model(trainer.model)
