import pytest
import torch

from mmhal.distill.dad import dad_loss, knn_mask, similarity, sp_loss


def test_dad_is_zero_when_student_features_equal_teacher_features():
    f = torch.randn(8, 16, 5)
    for variant in ("batch", "local"):
        assert sp_loss(f.clone(), f, variant, k=3).item() == pytest.approx(0.0, abs=1e-7)
    assert dad_loss([f, f * 2], [f, f * 2]).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("variant", ["batch", "local"])
def test_dad_is_invariant_to_feature_scale(variant):
    torch.manual_seed(0)
    fs, ft = torch.randn(8, 20), torch.randn(8, 20)
    base = sp_loss(fs, ft, variant, k=3)
    assert sp_loss(fs * 7.5, ft, variant, k=3).item() == pytest.approx(base.item(), rel=1e-5)
    assert sp_loss(fs, ft * 0.01, variant, k=3).item() == pytest.approx(base.item(), rel=1e-5)
    assert base.item() > 0


def test_dad_batch_is_the_mean_squared_difference_of_row_normalised_gram_matrices():
    torch.manual_seed(0)
    fs, ft = torch.randn(5, 3), torch.randn(5, 3)
    gs, gt = fs @ fs.t(), ft @ ft.t()
    gs = gs / gs.norm(dim=1, keepdim=True)
    gt = gt / gt.norm(dim=1, keepdim=True)
    assert sp_loss(fs, ft, "batch").item() == pytest.approx(((gs - gt) ** 2).mean().item(), rel=1e-6)
    assert torch.allclose(similarity(fs), gs, atol=1e-6)


def test_local_mask_keeps_exactly_the_k_nearest_teacher_neighbours_without_self():
    # points on a line: 0, 1, 3, 7, 15 -> neighbours are unambiguous
    ft = torch.tensor([[0.0], [1.0], [3.0], [7.0], [15.0]])
    m = knn_mask(ft, k=2)
    expected = torch.tensor(
        [[0, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.float
    )
    assert torch.equal(m, expected)
    assert torch.all(m.diagonal() == 0)


def test_local_loss_averages_only_the_masked_pairs():
    torch.manual_seed(0)
    fs, ft = torch.randn(6, 4), torch.randn(6, 4)
    mask = knn_mask(ft, 2)
    diff = (similarity(fs) - similarity(ft)) ** 2
    assert sp_loss(fs, ft, "local", k=2).item() == pytest.approx(((diff * mask).sum() / mask.sum()).item(), rel=1e-6)
    # changing a pair outside the mask does not change the local loss
    assert sp_loss(fs, ft, "local", k=2).item() != pytest.approx(sp_loss(fs, ft, "batch").item(), rel=1e-3)


def test_dad_gradient_reaches_student_features_only():
    fs = torch.randn(6, 10, requires_grad=True)
    ft = torch.randn(6, 10, requires_grad=True)
    sp_loss(fs, ft).backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    assert ft.grad is None


# DAD with distill.dad_relation=distance: inter-sample distances over their mean, Huber_1 (issue 20).
# Three samples on a line, worked by hand: student 0, 1, 3 (distances 1, 3, 2; mean off the diagonal 2), teacher
# 0, 2, 3 (distances 2, 3, 1; mean 2): psi_s - psi_t is -0.5 at (0, 1), 0 at (0, 2), +0.5 at (1, 2) and their
# mirrors, each Huber_1(0.5) = 0.125: batch = 4 * 0.125 / 9; local, k = 1 (the teacher's nearest neighbour of 0
# is 1, of 1 is 2, of 2 is 1): the entries (0, 1), (1, 2), (2, 1), all 0.125.
_S = torch.tensor([[0.0], [1.0], [3.0]])
_T = torch.tensor([[0.0], [2.0], [3.0]])


def test_dad_distance_relation_equals_the_hand_computed_values():
    from mmhal.distill.dad import distance_loss

    assert distance_loss(_S, _T, "batch").item() == pytest.approx(0.5 / 9, abs=1e-7)
    assert distance_loss(_S, _T, "local", k=1).item() == pytest.approx(0.125, abs=1e-7)
    assert distance_loss(_S * 4.0, _T, "batch").item() == pytest.approx(0.5 / 9, abs=1e-7)  # scale-free
    assert distance_loss(_S, _T, "batch").item() != pytest.approx(sp_loss(_S, _T, "batch").item())


def test_dad_distance_on_the_embedding_is_rkds_distance_term_and_the_settings_reach_the_loss():
    from types import SimpleNamespace

    from mmhal.distill.dad import dad_term
    from mmhal.distill.rkd import rkd_losses

    torch.manual_seed(0)
    emb_s, emb_t = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4)
    f_s, f_t = [torch.randn(6, 3, 2), torch.randn(6, 5)], [torch.randn(6, 3, 2), torch.randn(6, 5)]
    out, t_out = SimpleNamespace(features=f_s, embedding=emb_s), SimpleNamespace(features=f_t, embedding=emb_t)
    cfg = SimpleNamespace(dad_lambda=7.0, dad_variant="batch", dad_k=2, dad_global="false", dad_relation="distance",
                          dad_features="embedding")
    assert dad_term(cfg, out, t_out).item() == pytest.approx(7.0 * rkd_losses(emb_s, emb_t, angle=False)[0].item(),
                                                             rel=1e-6)
    cfg.dad_features = "trunk"  # both depths of the trunk, summed
    assert dad_term(cfg, out, t_out).item() == pytest.approx(
        7.0 * (rkd_losses(f_s[0].flatten(1), f_t[0].flatten(1), angle=False)[0]
               + rkd_losses(f_s[1], f_t[1], angle=False)[0]).item(), rel=1e-6)
    cfg.dad_relation = "similarity"
    assert dad_term(cfg, out, t_out).item() == pytest.approx(7.0 * (sp_loss(f_s[0], f_t[0]) + sp_loss(f_s[1], f_t[1])).item(),
                                                             rel=1e-6)


@pytest.mark.parametrize("key", ["dad_relation", "dad_features"])
def test_an_unknown_dad_relation_or_feature_choice_is_one_sentence(key):
    from mmhal.config import load_config
    from mmhal.errors import UserError

    with pytest.raises(UserError, match=f"distill.{key} must be"):
        load_config(None, [f"distill.{key}=cosine"])


def test_dad_angle_adds_rkds_angle_term_at_its_own_weight_and_is_off_by_default():
    """distill.dad_angle (issue 20: DAD with and without the angle term) = that weight x RKD's angle term on DAD's
    features (each depth of the trunk, summed); at 0 (the default) no term is added."""
    from types import SimpleNamespace

    from mmhal.config import load_config
    from mmhal.distill.dad import dad_term, dad_terms
    from mmhal.distill.rkd import rkd_losses

    assert load_config(None, []).distill.dad_angle == 0.0
    torch.manual_seed(1)
    emb_s, emb_t = torch.randn(5, 3, requires_grad=True), torch.randn(5, 3)
    f_s, f_t = [torch.randn(5, 2, 2), torch.randn(5, 4)], [torch.randn(5, 2, 2), torch.randn(5, 4)]
    out, t_out = SimpleNamespace(features=f_s, embedding=emb_s), SimpleNamespace(features=f_t, embedding=emb_t)
    cfg = SimpleNamespace(dad_lambda=7.0, dad_variant="batch", dad_k=2, dad_global="false", dad_relation="distance",
                          dad_features="embedding", dad_angle=0.0)
    assert set(dad_terms(cfg, out, t_out)) == {"dad"}
    cfg.dad_angle = 3.0
    terms = dad_terms(cfg, out, t_out)
    l_d, l_a = rkd_losses(emb_s, emb_t)
    assert terms["dad"].item() == pytest.approx(dad_term(cfg, out, t_out).item())
    assert terms["dad_angle"].item() == pytest.approx(3.0 * l_a.item(), rel=1e-6) and l_a.item() > 0
    terms["dad_angle"].backward()
    assert emb_s.grad is not None and emb_s.grad.abs().sum() > 0
    cfg.dad_features = "trunk"
    want = 3.0 * (rkd_losses(f_s[0].flatten(1), f_t[0].flatten(1))[1] + rkd_losses(f_s[1], f_t[1])[1]).item()
    assert dad_terms(cfg, out, t_out)["dad_angle"].item() == pytest.approx(want, rel=1e-6)


def test_a_negative_dad_angle_is_one_sentence():
    from mmhal.config import load_config
    from mmhal.errors import UserError

    with pytest.raises(UserError, match="distill.dad_angle must be 0 or more"):
        load_config(None, ["distill.dad_angle=-1"])


def test_mmh_and_dad_tuning_search_with_and_without_the_angle_term():
    from mmhal.distill.dad import DAD
    from mmhal.distill.mmh import MMH

    assert MMH.tune_space["distill.dad_angle"] == ("choice", [0.0, 50.0]) == DAD.tune_space["distill.dad_angle"]
