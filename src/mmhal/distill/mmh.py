"""MMH: one student trained with CE + lambda_RAD * L_RAD + lambda_DAD * L_DAD; and the ensemble.

``mmh-ensemble`` is the authors' final model: the logits of a RAD student and a DAD student (same
seed) summed at test time. It costs two students at inference; ``mmh`` costs one.
"""
from __future__ import annotations

import torch.nn.functional as F

from .base import Method, register_method
from .dad import dad_term
from .rad import rad_term

#: ensemble name -> the methods whose students' logits are summed
ENSEMBLES: dict[str, tuple[str, ...]] = {"mmh-ensemble": ("rad", "dad")}


@register_method("mmh")
class MMH(Method):
    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        return out.logits, {
            "ce": F.cross_entropy(out.logits.float(), target),
            "rad": rad_term(self, out, t_out, target),
            "dad": dad_term(self.cfg, out, t_out),
        }
