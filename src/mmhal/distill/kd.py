"""Hinton et al. (2015) knowledge distillation on the global logits."""
from __future__ import annotations


from .base import Method, kl_at_temperature, register_method


@register_method("kd")
class KD(Method):
    """L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))."""

    tune_space = {"distill.kd_alpha": ("uniform", 0.1, 0.95), "distill.temperature": ("choice", [1.0, 2.0, 4.0, 8.0])}

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        a = self.cfg.kd_alpha
        kd = kl_at_temperature(t_out.logits, out.logits, self.cfg.temperature).mean()
        return out.logits, {"ce": (1 - a) * self.ce(out.logits, target), "kd": a * kd}
