"""MMH: one student trained with CE + lambda_RAD * L_RAD + lambda_DAD * L_DAD; and the ensemble.

``mmh-ensemble`` is the authors' final model: the logits of a RAD student and a DAD student (same
seed) summed at test time. It costs two students at inference; ``mmh`` costs one. ``unimodal-ensemble``
is its baseline at equal inference cost: two unimodal students (the second, ``unimodal@2``, with its own
initialisation and data order), logits summed. ``hallucination-fusion`` is Hoffman et al.'s test-time model:
the hallucination network H and the RGB network r trained with it (``hallucination.rgb``, a companion
network of the ``hallucination`` job, see ``member_job``), logits summed; two networks, like the others.
"""
from __future__ import annotations


from .base import Method, register_method
from .dad import DAD, dad_terms
from .rad import RAD, rad_attention, rad_term

#: ensemble name -> the methods whose students' logits are summed
#: (a member ``method@r`` is a further student of that method with its own random stream, see engine.run)
ENSEMBLES: dict[str, tuple[str, ...]] = {"mmh-ensemble": ("rad", "dad"), "unimodal-ensemble": ("unimodal", "unimodal@2"),
                                         "hallucination-fusion": ("hallucination", "hallucination.rgb")}


def member_job(member: str) -> str:
    """The student job that trains an ensemble member: the member itself, or for a companion network
    ``job.part`` (a network a method trains beside its student, ``Method.companions``) the job ``job``."""
    return member.partition(".")[0]


@register_method("mmh")
class MMH(Method):
    tune_space = {**RAD.tune_space, **DAD.tune_space}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.rad_attention = rad_attention(student, cfg)

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        return out.logits, {
            "ce": self.ce(out.logits, target),
            "rad": rad_term(self, out, t_out, target),
            **dad_terms(self.cfg, out, t_out),
        }
