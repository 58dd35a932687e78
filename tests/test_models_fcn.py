"""FCN: input-sized score maps for any size, bilinear upsampling init, skips, mean IoU, pictures."""

import json

import numpy as np
import pytest

import pyfastdl
from pyfastdl import nn
from pyfastdl.models.fcn import FCN, VGG16Backbone, fcn8s, fcn16s, fcn32s
from pyfastdl.vision.segmentation import (MeanIoU, PixelAccuracy, RandomCrop, bilinear_kernel, confusion_matrix,
                                          init_bilinear_, overlay_masks, save_overlay_grid)

SMALL = dict(width=0.0625, fc_width=16, batch_norm=True)


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def _images(rng, n, h, w):
    return pyfastdl.tensor(rng.standard_normal((n, 3, h, w)).astype(np.float32))


@pytest.mark.parametrize("make", [fcn32s, fcn16s, fcn8s])
@pytest.mark.parametrize("hw", [(33, 47), (65, 31), (64, 64), (5, 3)])
def test_vgg_output_is_input_sized(rng, make, hw):
    with pyfastdl.no_grad():
        out = make(5, **SMALL).eval()(_images(rng, 2, *hw))
    assert out.shape == (2, 5) + hw and np.isfinite(out.detach().numpy()).all()


@pytest.mark.parametrize("hw", [(37, 45), (64, 64)])
def test_resnet_backbone_output_is_input_sized(rng, hw):
    with pyfastdl.no_grad():
        out = fcn8s(4, backbone="resnet18").eval()(_images(rng, 1, *hw))
    assert out.shape == (1, 4) + hw


def test_paper_fcn8s_layers():
    model = fcn8s(21, fc_width=64)  # the paper's VGG-16 widths; fc6/fc7 narrowed to keep the test small
    names = dict(model.named_parameters())
    assert names["backbone.fc6.0.weight"].shape == (64, 512, 7, 7)
    assert names["score_fr.weight"].shape == (21, 64, 1, 1)
    assert names["score_pool4.weight"].shape == (21, 512, 1, 1)
    assert names["score_pool3.weight"].shape == (21, 256, 1, 1)
    assert names["upscore2.weight"].shape == (21, 21, 4, 4) and names["upscore8.weight"].shape == (21, 21, 16, 16)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 15 and [c.out_channels for c in convs[:13:2]] == [64, 128, 256, 256, 512, 512, 512]
    # VGG-16's 14,714,688 convolution parameters + fc6, fc7, score and upsampling layers
    fc = 512 * 49 * 64 + 64 + 64 * 64 + 64
    scores = 21 * (64 + 512 + 256) + 3 * 21
    up = 21 * 21 * (16 + 16 + 256)
    assert n_params(model) == 14_714_688 + fc + scores + up


@pytest.mark.slow
def test_paper_fcn8s_parameter_count():
    assert n_params(fcn8s(21)) == 134_489_759  # as the reference Caffe FCN-8s (incl. upsampling weights)


def test_bilinear_kernel_values():
    np.testing.assert_allclose(bilinear_kernel(4)[0], [0.0625, 0.1875, 0.1875, 0.0625])
    k = bilinear_kernel(4)
    np.testing.assert_allclose(k, np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]))
    np.testing.assert_allclose(bilinear_kernel(3), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    # every output of a stride-f transposed convolution sums taps whose weights add to 1
    for f in (2, 8, 16):
        k = bilinear_kernel(2 * f)
        np.testing.assert_allclose(k.reshape(2, f, 2, f).sum(axis=(0, 2)), np.ones((f, f)))


@pytest.mark.parametrize("factor", [2, 8])
def test_bilinear_init_upsamples_bilinearly(rng, factor):
    up = nn.ConvTranspose2d(3, 3, 2 * factor, stride=factor, bias=False)
    init_bilinear_(up.weight)
    w = up.weight.detach().numpy()
    assert np.array_equal(w[0, 1], np.zeros_like(w[0, 1])) and np.allclose(w[2, 2], bilinear_kernel(2 * factor))
    # a linear ramp stays a linear ramp (slope / factor) away from the borders
    ramp = np.broadcast_to(np.arange(6.0), (1, 3, 5, 6)).astype(np.float32)
    out = up(pyfastdl.tensor(np.ascontiguousarray(ramp))).detach().numpy()[0, 0]
    interior = out[factor:-factor, factor:-factor]
    np.testing.assert_allclose(np.diff(interior, axis=1), 1.0 / factor, rtol=1e-5)
    np.testing.assert_allclose(np.diff(interior, axis=0), 0.0, atol=1e-5)


def test_fcn_upsampling_layers_start_bilinear_and_final_one_is_fixed():
    model = fcn8s(3, **SMALL)
    for name in ("upscore2", "upscore_pool4", "upscore8"):
        w = getattr(model, name).weight
        f = w.shape[-1] // 2
        np.testing.assert_allclose(w.detach().numpy()[1, 1], bilinear_kernel(2 * f))
    assert model.upscore2.weight.requires_grad and not model.upscore8.weight.requires_grad
    assert not model.score_fr.weight.detach().numpy().any() and not model.score_pool3.weight.detach().numpy().any()


def test_crop_offsets():
    """VGG-16's stride-s features are centred at s*i + (s-1)/2, so an upsampling by f lines up from
    offset f/2; ResNet's are centred at s*i, from f - 1/2 (rounded down)."""
    from pyfastdl.models.fcn import ResNetBackbone

    assert [VGG16Backbone.crop_offset(f) for f in (2, 8, 16, 32)] == [1, 4, 8, 16]
    assert [ResNetBackbone.crop_offset(f) for f in (2, 8, 16, 32)] == [1, 7, 15, 31]


def test_one_step_lowers_the_loss_with_ignore_label(rng):
    from pyfastdl import optim
    from pyfastdl.nn import functional as F

    pyfastdl.manual_seed(0)
    model = fcn8s(4, **SMALL)
    x = _images(rng, 4, 35, 33)
    y = rng.integers(0, 4, (4, 35, 33))
    y[:, :3] = 255  # a void border, as VOC's
    y = pyfastdl.tensor(y)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(x), y, ignore_index=255)
    loss.backward()
    opt.step()
    with pyfastdl.no_grad():
        assert F.cross_entropy(model(x), y, ignore_index=255).item() < loss.item()


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        FCN(3, variant="4s")
    with pytest.raises(ValueError, match="backbone"):
        FCN(3, backbone="alexnet")


def test_mean_iou_against_hand_count():
    target = np.array([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pred = np.array([[[0, 1, 1, 1], [2, 0, 0, 1]]])
    scores = np.eye(3)[np.where(pred == 255, 0, pred)].transpose(0, 3, 1, 2)
    m = MeanIoU(ignore_index=255)
    m.update(scores, target)
    # class 0: tp 1, fp 1 (pixel (1,1)), fn 1 -> 1/3; class 1: tp 3, fp 1 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    assert m.compute() == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    acc = PixelAccuracy(255)
    acc.update(scores, target)
    assert acc.compute() == pytest.approx(5 / 7)
    assert confusion_matrix(pred, target, 3, 255).sum() == 7


def test_mean_iou_skips_absent_classes():
    m = MeanIoU()
    m.update(np.eye(4)[[[0, 1]]].transpose(0, 2, 1)[:, :, None, :], np.array([[[0, 1]]]))
    assert m.compute() == 1.0  # classes 2 and 3 occur nowhere and do not count


def test_random_crop_pads_with_ignore_label(rng):
    image, mask = rng.random((3, 5, 9)), rng.integers(0, 3, (5, 9))
    x, y = RandomCrop(8, 255, seed=0)(image, mask)
    assert x.shape == (3, 8, 8) and y.shape == (8, 8) and (y[5:] == 255).all()
    x, y = RandomCrop(4, 255, random=False)(image, mask)
    np.testing.assert_array_equal(y, mask[0:4, 2:6])


def test_overlay_pictures(rng, tmp_path):
    images = rng.random((2, 3, 6, 7))
    masks = rng.integers(0, 3, (2, 6, 7))
    rgb = overlay_masks(images, masks)
    assert rgb.shape == (2, 6, 7, 3)
    grey = images.transpose(0, 2, 3, 1) @ [0.299, 0.587, 0.114]
    np.testing.assert_allclose(rgb[masks == 0], np.repeat(grey[masks == 0][:, None], 3, axis=1))
    assert not np.allclose(rgb[masks > 0], np.repeat(grey[masks > 0][:, None], 3, axis=1))
    path = tmp_path / "grid.png"
    save_overlay_grid(str(path), images, masks, masks, class_names=("bg", "a", "b"))
    assert path.stat().st_size > 1000


def test_training_run_writes_predicted_masks_and_predict_draws_them(tmp_path):
    """`pyfastdl train fcn8s` (a tiny run) leaves predictions.png; `pyfastdl predict` on the
    checkpoint draws the masks for a user's image."""
    import matplotlib.image

    from pyfastdl.cli import main

    run = tmp_path / "run"
    assert main(["train", "fcn8s", "--out", str(run), "--quiet", "--limit", "16", "--epochs", "1",
                 "--batch-size", "8", "--image-size", "32", "--width-mult", "0.0625", "--hidden", "16"]) == 0
    record = json.load(open(run / "metrics.json"))
    assert 0.0 <= record["test_mean_iou"] <= 1.0
    assert (run / "predictions.png").stat().st_size > 1000
    image = tmp_path / "scene.png"
    matplotlib.image.imsave(image, np.random.default_rng(0).random((40, 50, 3)))
    out = tmp_path / "pred"
    assert main(["predict", str(run / "checkpoint.safetensors"), str(image), "--out", str(out), "--json"]) == 0
    assert (out / "predictions.png").stat().st_size > 1000


@pytest.mark.slow
def test_fcn8s_reaches_075_mean_iou_on_shapes(tmp_path):
    from pyfastdl.cli import main

    assert main(["train", "fcn8s", "--out", str(tmp_path), "--quiet"]) == 0
    assert json.load(open(tmp_path / "metrics.json"))["test_mean_iou"] >= 0.75


def test_voc_recipe_trains_on_a_tiny_copy(tmp_path, rng):
    """--dataset voc reads VOC2012 segmentation (train and val splits) from --data-dir, crops training
    images to --size and pads evaluation images with the ignore label."""
    from test_vision_loaders import write_voc

    from pyfastdl.cli import main

    base, _ = write_voc(tmp_path / "voc", rng)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    run = tmp_path / "run"
    assert main(["train", "fcn32s", "--dataset", "voc", "--data-dir", str(tmp_path / "voc"), "--image-size", "16",
                 "--batch-size", "1", "--epochs", "1", "--width-mult", "0.0625", "--hidden", "8", "--out", str(run),
                 "--quiet"]) == 0
    record = json.load(open(run / "metrics.json"))
    assert 0.0 <= record["test_mean_iou"] <= 1.0 and (run / "predictions.png").exists()
