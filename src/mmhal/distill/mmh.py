"""MMH: one student trained with CE + lambda_RAD * L_RAD + lambda_DAD * L_DAD; and the ensemble.

``mmh-ensemble`` is the authors' final model: the logits of a RAD student and a DAD student (same
seed) summed at test time. It costs two students at inference; ``mmh`` costs one.
"""
from __future__ import annotations

import torch.nn.functional as F

from .base import Method, register_method
from .dad import dad_loss, global_batch
from .rad import rad_loss

#: ensemble name -> the methods whose students' logits are summed
ENSEMBLES: dict[str, tuple[str, ...]] = {"mmh-ensemble": ("rad", "dad")}


@register_method("mmh")
class MMH(Method):
    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        c = self.cfg
        rad, _, _ = rad_loss(
            self.student, out.fmap, self.teacher, t_out.fmap, target, c.temperature, c.rad_weighting, c.rad_levels
        )
        dad = dad_loss(out.features, t_out.features, c.dad_variant, c.dad_k, global_batch(c))
        return out.logits, {
            "ce": F.cross_entropy(out.logits.float(), target),
            "rad": c.rad_lambda * rad,
            "dad": c.dad_lambda * dad,
        }
