"""Modality hallucination (Hoffman, Gupta & Darrell 2016), adapted to mmhal's networks.

Hoffman et al. train three streams: an RGB network r, a depth network d (trained first, then frozen up to
the hallucination layer) and a hallucination network H, which sees RGB only, starts from d's weights and
learns to reproduce d's mid-level activations. At test time r and H run and their scores are averaged.
Here the frozen multimodal teacher plays d, f3 (the first trunk depth, shared in shape by every network)
is the hallucination layer, and

    L = CE(z_H, y) + CE(z_r, y) + CE((z_r + z_H) / 2, y) + gamma * mean over B * C * |grid| of
        (sigmoid(f3_t) - sigmoid(f3_H))^2

* H is ``method.student``: the network the run saves, evaluates and reports ("H alone", one network at
  test time). It starts from every teacher tensor whose name and shape match (its own modalities' stems
  and normalisers, the trunk, the head), as H starts from the depth network; the fusion layer, whose
  width differs, keeps its initialisation.
* r is ``method.rgb``: a second student-shaped network trained jointly with cross-entropy, starting from
  the initialisation every other method's student gets for this seed. It is in the optimizer and in the
  epoch checkpoint, and a companion network (``distill.base``): the run saves r at H's selected epoch as
  ``models/hallucination.rgb-seed<S>.pt`` and reports the paper's test-time fusion r + H as the ensemble
  ``hallucination-fusion`` (logits summed; two networks, twice the inference cost, comparable to
  ``mmh-ensemble`` and ``unimodal-ensemble``).
* The hallucination loss is the sigmoid-squashed squared error of the paper, as a mean over elements
  (the paper sums; gamma absorbs the difference). gamma = 100 (the re-implementation's value); the paper
  sets it so that gamma * L_hal is about 10 times each other loss: tune it.

A step runs two student forwards and backwards besides the teacher.
"""
from __future__ import annotations

import copy

import torch

from .base import Method, full_precision, register_method

FUSION = ("se.", "proj.")  # the fusion layer: its input is the concatenation of every modality's stem


def copy_matching(net: torch.nn.Module, source: torch.nn.Module) -> int:
    """Copy ``source``'s tensors into ``net`` wherever a name and shape match, except the fusion layer; returns
    how many were copied."""
    s_state, n_state = source.state_dict(), net.state_dict()
    copied = {k: v.detach().clone() for k, v in s_state.items()
              if k in n_state and n_state[k].shape == v.shape and not k.startswith(FUSION)}
    net.load_state_dict({**n_state, **copied})
    return len(copied)


def hallucination_loss(h_feat: torch.Tensor, t_feat: torch.Tensor) -> torch.Tensor:
    """mean((sigmoid(f_t) - sigmoid(f_H))^2) over all elements, fp32; each element lies in [0, 1]."""
    with full_precision(h_feat):
        return (torch.sigmoid(t_feat.detach().float()) - torch.sigmoid(h_feat.float())).pow(2).mean()


@register_method("hallucination")
class Hallucination(Method):
    """L = CE(z_H) + CE(z_r) + CE((z_r + z_H) / 2) + gamma * L_hal(f3); the student is H."""

    tune_space = {"distill.hallucination.gamma": ("log", 10.0, 1000.0)}
    companions = ("rgb",)

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.rgb = copy.deepcopy(student)  # r: this seed's student initialisation
        copy_matching(student, self.teacher)  # H: from the teacher where it can

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        r_logits = self.rgb(inputs).logits
        return out.logits, {
            "ce": self.ce(out.logits, target),
            "ce_rgb": self.ce(r_logits, target),
            "ce_joint": self.ce((r_logits.float() + out.logits.float()) / 2, target),
            "hallucination": self.cfg.hallucination.gamma * hallucination_loss(out.features[0], t_out.features[0]),
        }
