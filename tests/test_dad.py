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
