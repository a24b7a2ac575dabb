"""DeepLab-LargeFOV on VGG16 (Chen et al., ICLR 2015) with the human-region masking layer.

    image [B,H,W,3] RGB 0..255 -> VGGPreprocessing (BGR minus ImageNet means)
    block1_conv1..2 (64)   -> block1_pool 3x3/2      H/2
    block2_conv1..2 (128)  -> block2_pool 3x3/2      H/4
    block3_conv1..3 (256)  -> block3_pool 3x3/2      H/8
    block4_conv1..3 (512)  -> block4_pool 3x3/1
    block5_conv1..3 (512, dilation 2) -> block5_pool 3x3/1 -> pool5a (3x3/1 average)
    fc6 3x3 dilation 12 (1024) + ReLU + dropout -> fc7 1x1 (1024) + ReLU + dropout
    masking: m = fc7 * resize_region(human_region)      [B, ceil(H/8), ceil(W/8), 1024]
    fc8 1x1 (num_classes, linear)                       -> logits

Layer names of conv1-conv5 are those of `keras.applications.VGG16`, so ImageNet weights load
by name (`coseg_tf.weights.load_vgg16_weights`). `width_multiplier` scales every channel
count (0.25: 16, 32, 64, 128, 128, 256 channels, ~1.3 M parameters; 1.0: ~20.5 M).

Padding. The stride-2 max pools pad one pixel on every side and pool 'valid' (Caffe's
`pad: 1`): the map becomes ceil(n / 2) as with 'same', but cell k is centred on input pixel
2k for odd and even n alike, so feature cell (r, c) sits on input pixel (8r, 8c); the
masking layer and the losses rely on it (`coseg_tf.masking`). Zero padding equals max
pooling's ignore-the-border because every pool follows a ReLU (inputs >= 0). The
stride-1 pools are 'same', which pads symmetrically for a 3x3 window.

Speed on CPU (measured with `tools/bench_fc6.py`). fc6 is a `DilatedConv2D` (see
`coseg_tf.layers`), computed per tap or as TensorFlow's dilated convolution (`fc6_impl`,
FC6_IMPLS): on CPU the dilated convolution (SpaceToBatch) is ~10x slower on 21x21 maps
at width 0.25 and ~100x at width 1.0, so "auto" takes the taps on CPU and the
convolution (cuDNN) where a GPU is visible. Both forms hold the same variables and
compute the same outputs. conv5 (dilation 2) stays a dilated Conv2D: there the per-tap
form was no faster at width 1.0 (41x41: equal; 21x21: within ~10-30%) and 1.5-2x slower
at width 0.25.

Mixed precision (`dtype_policy`, see `coseg_tf.precision`): every layer but the
preprocessing, the masking layer and fc8 computes in the policy's dtype; those three
stay float32, so the masked features and the logits are float32.
"""

import keras
import tensorflow as tf

from coseg_tf.layers import DilatedConv2D, VGGPreprocessing
from coseg_tf.masking import OUTPUT_STRIDE, HumanMasking

# (block, number of 3x3 convolutions, channels at width 1.0), as keras.applications.VGG16.
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
VGG16_CONV_NAMES = tuple(f"block{b}_conv{i}" for b, n, _ in VGG16_BLOCKS
                         for i in range(1, n + 1))
FC_CHANNELS = 1024
CONV5_DILATION = 2
FC6_DILATION = 12
# The DeepLab prototxt initialises fc8 from a Gaussian with std 0.01.
FC8_INIT_STDDEV = 0.01
# The encoder ends here (conv1-conv5 and the pools); the head is fc6, fc7, the masking
# layer and fc8, LargeFOV's counterpart of DeepLabV3+'s ASPP decoder (`encoder_and_head`).
ENCODER_OUTPUT = "pool5a"


# fc6's implementation (`fc6_impl`): "taps" (per-tap products, fast on CPU), "conv"
# (TensorFlow's dilated convolution), or "auto": conv where a GPU is visible, else taps.
FC6_IMPLS = ("auto", "taps", "conv")


def resolve_fc6_impl(fc6_impl, gpus=None):
    """The form fc6 is computed in: "taps" or "conv" ("auto" by the devices).

    Args:
      fc6_impl: one of FC6_IMPLS.
      gpus: the number of visible GPUs; None counts them (`tf.config`).

    Raises:
      ValueError: `fc6_impl` is not one of FC6_IMPLS.
    """
    if fc6_impl not in FC6_IMPLS:
        raise ValueError(f"fc6_impl must be one of {', '.join(FC6_IMPLS)}, got {fc6_impl!r}")
    if fc6_impl != "auto":
        return fc6_impl
    if gpus is None:
        gpus = len(tf.config.list_logical_devices("GPU"))
    return "conv" if gpus > 0 else "taps"


def scaled_channels(channels, width_multiplier):
    """Channel count `channels` scaled by `width_multiplier` (at least 1)."""
    return max(1, int(round(channels * width_multiplier)))


def build_deeplab_largefov(*,
                           num_classes,
                           width_multiplier=1.0,
                           dropout_rate=0.5,
                           fc6_impl="auto",
                           dtype_policy=None,
                           name="deeplab_largefov"):
    """Builds DeepLab-LargeFOV (VGG16) with the masking layer, output stride 8.

    Args:
        num_classes: int >= 1, the number of output classes (background included).
        width_multiplier: float > 0 scaling every channel count (1.0 is the paper's
            network; 0.25 keeps tests and CPU demos small).
        dropout_rate: float in [0, 1), dropout after fc6 and after fc7.
        fc6_impl: how fc6 is computed, one of FC6_IMPLS ("auto": the convolution
            where a GPU is visible, else per tap; `resolve_fc6_impl`). Same variables
            and outputs either way.
        dtype_policy: the Keras dtype policy of the network ("float32",
            "mixed_float16", "mixed_bfloat16"; `coseg_tf.precision.policy_name`);
            None takes Keras' global policy. The preprocessing, the masking layer and
            fc8 are float32 whatever the policy.
        name: the model's name.

    Returns:
        A functional `keras.Model`. Inputs, a dict:
          "image": float32 [B, H, W, 3], RGB in 0..255 (H, W any, may be None);
          "human_region": float32 [B, H, W, 1], 1 inside a human region, 0 outside.
        Outputs, a dict, with h = ceil(H / 8), w = ceil(W / 8):
          "logits": float32 [B, h, w, num_classes], fc8's output;
          "masked_features": float32 [B, h, w, F], m = fc7 * region, F = fc7's width.
        Layers 'fc6', 'fc7', 'masking', 'fc8' can be found with `model.get_layer`.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_deeplab_largefov: `num_classes` must be a positive int, "
                         f"got {num_classes!r}")
    if not isinstance(width_multiplier, (int, float)) or not width_multiplier > 0:
        raise ValueError(f"build_deeplab_largefov: `width_multiplier` must be a positive "
                         f"number, got {width_multiplier!r}")
    if not isinstance(dropout_rate, (int, float)) or not 0 <= dropout_rate < 1:
        raise ValueError(f"build_deeplab_largefov: `dropout_rate` must be in [0, 1), "
                         f"got {dropout_rate!r}")
    fc6_form = resolve_fc6_impl(fc6_impl)
    fc_channels = scaled_channels(FC_CHANNELS, width_multiplier)
    # The dtype policy of every layer between the preprocessing and the masking layer;
    # each one is given it, so that no layer casts back to float32 in between.
    dtype = dtype_policy

    # === Layers ===
    # float32 under mixed precision too: 0..255 minus the means, cast by conv1_1.
    preprocess = VGGPreprocessing(name="preprocess", dtype="float32")

    def conv_unit(conv_class, filters, kernel_size, name, **kwargs):
        """[the convolution with its ReLU], as a list of layers."""
        return [conv_class(filters, kernel_size, activation="relu", name=name,
                           dtype=dtype, **kwargs)]

    blocks = []
    for block, num_convs, channels in VGG16_BLOCKS:
        filters = scaled_channels(channels, width_multiplier)
        units = []
        for i in range(1, num_convs + 1):
            dilation = CONV5_DILATION if block == 5 else 1
            units += conv_unit(keras.layers.Conv2D, filters, 3, f"block{block}_conv{i}",
                               padding="same", dilation_rate=dilation)
        if block <= 3:
            # Stride 2, padding 1 on every side (see the module docstring).
            pool = [keras.layers.ZeroPadding2D(1, name=f"block{block}_pool_pad",
                                               dtype=dtype),
                    keras.layers.MaxPooling2D(3, strides=2, padding="valid",
                                              name=f"block{block}_pool", dtype=dtype)]
        else:
            pool = [keras.layers.MaxPooling2D(3, strides=1, padding="same",
                                              name=f"block{block}_pool", dtype=dtype)]
        blocks.append(units + pool)
    pool5a = keras.layers.AveragePooling2D(3, strides=1, padding="same", name="pool5a",
                                           dtype=dtype)
    fc6 = conv_unit(DilatedConv2D, fc_channels, 3, "fc6", dilation_rate=FC6_DILATION,
                    implementation=fc6_form)
    drop6 = keras.layers.Dropout(dropout_rate, name="drop6", dtype=dtype)
    fc7 = conv_unit(keras.layers.Conv2D, fc_channels, 1, "fc7")
    drop7 = keras.layers.Dropout(dropout_rate, name="drop7", dtype=dtype)
    # float32 under mixed precision too: the losses read m and the logits.
    masking = HumanMasking(stride=OUTPUT_STRIDE, name="masking", dtype="float32")
    fc8 = keras.layers.Conv2D(
        num_classes, 1, name="fc8", dtype="float32",
        kernel_initializer=keras.initializers.RandomNormal(stddev=FC8_INIT_STDDEV))

    # === Functional Model ===
    image = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    human_region = keras.Input(shape=(None, None, 1), dtype="float32",
                               name="human_region")
    x = preprocess(image)
    for block_layers in blocks:
        for layer in block_layers:
            x = layer(x)
    x = pool5a(x)
    for layer in fc6:
        x = layer(x)
    x = drop6(x)
    for layer in fc7:
        x = layer(x)
    # features: [B, h, w, F]
    features = drop7(x)
    masked_features = masking([features, human_region])
    logits = fc8(masked_features)
    return keras.Model(
        inputs={"image": image, "human_region": human_region},
        outputs={"logits": logits, "masked_features": masked_features},
        name=name,
    )


def encoder_and_head(network):
    """The network as encoder then head: two functional models sharing its layers.

    encoder: {"image", "human_region"} -> the output of `ENCODER_OUTPUT` (pool5a),
      [B, h, w, F5] in the network's compute dtype (the region is not read);
    head: [encoder features, human_region] -> {"logits", "masked_features"}, as the
      network returns them.
    head([encoder(inputs), inputs["human_region"]]) equals network(inputs): the same
    layers and variables. UniMatch's feature perturbation (`coseg_tf.objectives.
    unimatch`) runs the head on perturbed encoder features, as its DeepLabV3+ decodes
    perturbed backbone features.

    Args:
      network: a model of `build_deeplab_largefov`.

    Returns:
      (encoder, head) keras.Model objects; they hold no variables of their own.
    """
    features = network.get_layer(ENCODER_OUTPUT).output
    region = network.get_layer("human_region").output
    encoder = keras.Model(network.input, features, name=f"{network.name}_encoder")
    head = keras.Model([features, region], network.output, name=f"{network.name}_head")
    return encoder, head
