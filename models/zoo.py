"""The model zoo: named models with their preprocessing and weights source."""
from __future__ import annotations

from .digits import PREPROCESS as DIGITS_PREPROCESS
from .digits import WEIGHTS as DIGITS_WEIGHTS
from .digits import DigitsNet, digits_datasets
from .mobilenetv2_cifar import WEIGHTS as MOBILENETV2_WEIGHTS
from .mobilenetv2_cifar import mobilenetv2
from .modern_cifar import MODELS as MODERN
from .modern_cifar import weights_path as modern_weights
from .resnet_cifar import resnet20, resnet56
from .motion_clips import CLASSES as MOTION_CLASSES
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Preprocess
from .video_motion import MODELS as VIDEO_MODELS
from .video_motion import VIDEO_PREPROCESS
from .video_motion import weights_path as video_weights
from .video_motion import zoo_weights as video_zoo_weights

# The published CIFAR ResNet checkpoints were trained on [0,1] RGB normalised with ImageNet
# statistics (see ../shared/README.md), not CIFAR's own.
CIFAR_PREPROCESS = Preprocess(size=(32, 32), mean=IMAGENET_MEAN, std=IMAGENET_STD)
DEFAULT_MODEL = "digits-convnet"

ZOO: dict[str, ModelSpec] = {
    "digits-convnet": ModelSpec(
        "digits-convnet", DigitsNet, DIGITS_PREPROCESS, 10,
        "embedded demo: 4-stage ConvNet on scikit-learn digits (1x32x32), packaged weights",
        weights=DIGITS_WEIGHTS, default_data=digits_datasets),
    "resnet20-cifar10": ModelSpec(
        "resnet20-cifar10", resnet20, CIFAR_PREPROCESS, 10,
        "ResNet-20 for CIFAR-10 (He et al. 2016, option-A shortcuts), 0.27 M params",
        weights_hint="the published checkpoint, e.g. ../shared/models/resnet20-cifar10.th"),
    "resnet56-cifar10": ModelSpec(
        "resnet56-cifar10", resnet56, CIFAR_PREPROCESS, 10,
        "ResNet-56 for CIFAR-10 (He et al. 2016, option-A shortcuts), 0.85 M params",
        weights_hint="the published checkpoint, e.g. ../shared/models/resnet56-cifar10.th"),
    "mobilenetv2-cifar10": ModelSpec(
        "mobilenetv2-cifar10", mobilenetv2, CIFAR_PREPROCESS, 10,
        "MobileNetV2 (width 1.0, stride-1 stem) for 32x32 CIFAR-10, 2.24 M params, trained by "
        "the project's recipe", weights=MOBILENETV2_WEIGHTS,
        weights_hint="the recipe's weights: python -m convdeploy.models.mobilenetv2_cifar "
                     "--train ../shared/data/cifar10/train-subset (writes "
                     f"{MOBILENETV2_WEIGHTS}; about 15 min on 2 cores)"),
}

_MODERN_PAPERS = {
    "convnext": "ConvNeXt (Liu et al. 2022): 7x7 depthwise, LayerNorm, GELU MLP, layer scale",
    "inceptionnext": "InceptionNeXt (Yu et al. 2024): identity/3x3/1x11/11x1 depthwise split, "
                     "concat, BatchNorm, GELU MLP",
    "hornet": "HorNet (Rao et al. 2022): recursive gated convolution (gnConv, order 3)",
    "lsnet": "LSNet (Wang et al. 2025): large-kernel perception, small-kernel aggregation",
    "mobilenetv3": "MobileNetV3-Small-like (Howard et al. 2019): hard-swish, SE with "
                   "hard-sigmoid gates",
}
for _name in MODERN:
    ZOO[f"{_name}-cifar10"] = ModelSpec(
        f"{_name}-cifar10", MODERN[_name][0], CIFAR_PREPROCESS, 10,
        f"{_MODERN_PAPERS[_name]}; CIFAR-scale, trained by the project's recipe",
        weights=modern_weights(_name),
        weights_hint=f"the recipe's weights: python -m convdeploy.models.modern_cifar --model "
                     f"{_name} --train ../shared/data/cifar10/train-subset (writes "
                     f"{modern_weights(_name)})")


def _motion_defaults():
    """Calibration and evaluation clips made from scikit-learn's two sample photographs (no
    download): the embedded default data of the video models."""
    from .motion_clips import MotionConfig, generate, sample_photographs
    from .video_motion import FRAMES

    photos = sample_photographs()
    cfg = MotionConfig(frames=FRAMES)
    return generate(photos, 256, cfg=cfg, seed=10), generate(photos, 500, cfg=cfg, seed=11)


_VIDEO_PAPERS = {
    "squeezetime": "SqueezeTime (Zhai et al. 2024): time folded into channels, Channel-Time "
                   "Learning blocks, depthwise 2x2 downsampling",
    "p3d": "P3D (Qiu et al. 2017): (1,3,3) spatial + (3,1,1) temporal Conv3d, blocks A/B/C",
}
for _name in VIDEO_MODELS:
    ZOO[f"{_name}-motion"] = ModelSpec(
        f"{_name}-motion", VIDEO_MODELS[_name][0], VIDEO_PREPROCESS, len(MOTION_CLASSES),
        f"{_VIDEO_PAPERS[_name]}; video (N, 3, {VIDEO_PREPROCESS.frames}, 32, 32), camera-motion "
        "clips, trained by the project's recipe", weights=video_zoo_weights(_name),
        weights_hint=f"the recipe's weights: python -m convdeploy.models.video_motion --model "
                     f"{_name} --train ../shared/data/cifar10/train-subset (writes "
                     f"{video_weights(_name)})", default_data=_motion_defaults)
