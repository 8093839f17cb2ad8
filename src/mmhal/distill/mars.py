"""MARS (Crasto et al. 2019, "Motion-Augmented RGB Stream"): regress the teacher's pooled features.

    L = CE(z_s, y) + alpha * mean over B * C of (embedding_s - embedding_t)^2

The embedding is the globally pooled f4 (the paper's choice, its penultimate pooled vector); the teacher's
side carries no gradient; alpha = 50 as in the paper. There is no regressor: the student's pooled features
are pulled onto the multimodal teacher's directly. In the paper the teacher is the flow stream alone; here
it is mmhal's multimodal teacher, as for every other method.
"""
from __future__ import annotations

from .base import Method, register_method
from .fitnet import hint_loss


@register_method("mars")
class MARS(Method):
    """L = CE(z_s, y) + alpha * MSE(embedding_s, embedding_t)."""

    tune_space = {"distill.mars.alpha": ("log", 5.0, 500.0)}

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        return out.logits, {"ce": self.ce(out.logits, target),
                            "mars": self.cfg.mars.alpha * hint_loss(out.embedding, t_out.embedding)}
