"""Small Keras layers of the DeepLab-LargeFOV network.

`DilatedConv2D` is a dilated ('atrous') 3x3 convolution with 'same' padding and stride 1,
computed in one of two ways (`implementation`) from the same `kernel` (kh, kw, cin, cout)
and `bias` (cout,) variables as `keras.layers.Conv2D`:

  "taps"  a sum of one matrix product per kernel tap over shifted windows of the input
          (the fast form on CPU, see below);
  "conv"  TensorFlow's dilated convolution, `tf.nn.convolution(dilations=...)`, exactly
          what a dilated `keras.layers.Conv2D` runs: TF 2.21 rewrites it, on CPU and GPU
          alike, as SpaceToBatch -> an undilated Conv2D (cuDNN on a GPU) ->
          BatchToSpace. (The Conv2D op's own `dilations`, cuDNN's native dilated
          convolution, is not used: the CPU kernel refuses dilations > 1, so it could
          not be tested here.)

Both forms are one layer class, so that weight files and checkpoints are the same
whichever form a run trained with: Keras 3 keys a layer's weights by its class, and a
`Conv2D` in fc6's place would renumber every `conv2d_N` after it.

Why per tap on CPU: with dilation 12 on a 21x21 map the SpaceToBatch form is a
convolution over 144x the batch of 2x2 maps, which falls off a cliff on CPU (measured
here for fc6 of the full-width network, batch 8, 21x21, forward+backward: about 26 s as
Conv2D against under 1 s as per-tap products; `tools/bench_fc6.py` repeats it).

The per-tap form also skips work a dilated convolution wastes on zero padding: tap (i, j)
is shifted by (oi, oj) = (i * d - pad_top, j * d - pad_left) and only the output window
where the shifted input lies inside the map is multiplied; a tap that lies wholly outside
the map (a map smaller than the dilation) is skipped when the shape is static. With a
static spatial shape the layer also keeps the static output shape.

`VGGPreprocessing` turns RGB images in 0..255 into what the Keras VGG16 ImageNet weights
expect (BGR minus the ImageNet channel means), inside the model.
"""

import keras
import tensorflow as tf

# Per-channel ImageNet means in BGR order, as in keras.applications.vgg16 ('caffe' mode).
VGG_BGR_MEANS = (103.939, 116.779, 123.68)
# DilatedConv2D's two forms (see the module docstring).
IMPLEMENTATIONS = ("taps", "conv")


def _pair(value, name):
    """An int or a pair of ints as a tuple of two positive ints."""
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v >= 1 for v in value):
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints, "
                         f"got {value!r}")
    return value


def _is_static(*values):
    return all(isinstance(v, int) for v in values)


def _max(a, b):
    return max(a, b) if _is_static(a, b) else tf.maximum(a, b)


def _min(a, b):
    return min(a, b) if _is_static(a, b) else tf.minimum(a, b)


def _tap_window(size, offset):
    """Output range [start, stop) whose input position (k + offset) lies in [0, size).

    `size` is a Python int (static shape) or a scalar int32 tensor; `offset` an int.
    Returns (start, stop) with 0 <= start <= stop <= size.
    """
    start = _min(_max(-offset, 0), size)
    stop = _max(_min(size - offset, size), start)
    return start, stop


@keras.saving.register_keras_serializable(package="coseg_tf")
class DilatedConv2D(keras.layers.Layer):
    """A 2-D dilated convolution, 'same' padding, stride 1, per tap or as one convolution.

    Numerically the same as `keras.layers.Conv2D(filters, kernel_size,
    dilation_rate=dilation_rate, padding='same')` with the same `kernel` and `bias`
    (up to float rounding, ~1e-6), and with the same variable names and shapes, so
    weights load into either. The "taps" form is fast on small maps with large
    dilations, where the SpaceToBatch path of a dilated Conv2D is slow on CPU; the
    "conv" form is that dilated convolution (see the module docstring).

    Args:
        filters: int, the number of output channels.
        kernel_size: int or pair of ints, the kernel height and width.
        dilation_rate: int or pair of ints, the spacing between kernel taps.
        activation: activation name or callable applied after the bias; None for linear.
        use_bias: bool, whether to add a bias vector.
        kernel_initializer: initializer of the (kh, kw, cin, filters) kernel.
        bias_initializer: initializer of the (filters,) bias.
        kernel_regularizer: optional regularizer of the kernel.
        bias_regularizer: optional regularizer of the bias.
        implementation: "taps" (per-tap matrix products) or "conv"
            (`tf.nn.convolution` with dilations); same variables, same outputs.
        **kwargs: other keyword arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Example:

    >>> layer = DilatedConv2D(256, 3, dilation_rate=12, activation="relu", name="fc6")
    >>> y = layer(tf.zeros([2, 21, 21, 128]))
    >>> y.shape
    TensorShape([2, 21, 21, 256])
    """

    def __init__(self,
                 filters,
                 kernel_size,
                 dilation_rate=1,
                 activation=None,
                 use_bias=True,
                 kernel_initializer="glorot_uniform",
                 bias_initializer="zeros",
                 kernel_regularizer=None,
                 bias_regularizer=None,
                 implementation="taps",
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be a positive int, got {filters!r}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"`implementation` must be one of {IMPLEMENTATIONS}, got "
                             f"{implementation!r}")
        self.implementation = implementation
        self.filters = filters
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{self.name}: the channel dimension of the input must be "
                             f"known, got input shape {input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: in_channels})
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, in_channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        else:
            self.bias = None

    def _offsets(self):
        """Row and column offsets of every tap under TensorFlow's 'same' padding."""
        offsets = []
        for k, d in zip(self.kernel_size, self.dilation_rate):
            pad_before = (k - 1) * d // 2
            offsets.append([i * d - pad_before for i in range(k)])
        return offsets

    def call(self, inputs):
        # inputs: [B, H, W, cin]
        x = tf.convert_to_tensor(inputs)
        if self.implementation == "conv":
            outputs = tf.nn.convolution(
                x, tf.cast(tf.convert_to_tensor(self.kernel), x.dtype), strides=1,
                padding="SAME", dilations=self.dilation_rate)
        else:
            outputs = self._taps(x)
        # outputs: [B, H, W, filters]
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(tf.convert_to_tensor(self.bias),
                                                      x.dtype))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _taps(self, x):
        """The convolution of x [B, H, W, cin] as per-tap products, no bias: [B, H, W, filters]."""
        dynamic = tf.shape(x)
        batch = x.shape[0] if x.shape[0] is not None else dynamic[0]
        height = x.shape[1] if x.shape[1] is not None else dynamic[1]
        width = x.shape[2] if x.shape[2] is not None else dynamic[2]
        in_channels = x.shape[-1]
        kh, kw = self.kernel_size
        # kernel: [kh, kw, cin, filters], in the compute dtype (mixed precision), as
        # kh * kw taps [cin, filters]. Unstacked rather than indexed, and the windows
        # below cut with tf.slice rather than x[...]: their gradients are one Pack and
        # Pads instead of a full-size StridedSliceGrad per tap (fc6 forward + backward
        # 0.55-0.76x the time on CPU, docs/PERFORMANCE.md).
        kernel = tf.cast(tf.convert_to_tensor(self.kernel), x.dtype)
        taps = tf.unstack(tf.reshape(kernel, [kh * kw, in_channels, self.filters]))
        row_offsets, col_offsets = self._offsets()

        outputs = None
        for i, oi in enumerate(row_offsets):
            r0, r1 = _tap_window(height, oi)
            for j, oj in enumerate(col_offsets):
                c0, c1 = _tap_window(width, oj)
                if _is_static(r0, r1, c0, c1) and (r1 == r0 or c1 == c0):
                    continue  # the tap reads only padding: it adds nothing.
                # window: [B, r1 - r0, c1 - c0, cin], the input under tap (i, j):
                # rows r0 + oi .. r1 + oi, inside the map (the start is clamped into
                # it for an empty window of a dynamic shape, which tf.slice checks).
                window = tf.slice(x, [0, _min(_max(r0 + oi, 0), height),
                                      _min(_max(c0 + oj, 0), width), 0],
                                  [-1, r1 - r0, c1 - c0, -1])
                product = tf.matmul(tf.reshape(window, [-1, in_channels]),
                                    taps[i * kw + j])
                # product: [B, r1 - r0, c1 - c0, filters]
                product = tf.reshape(product, [batch, r1 - r0, c1 - c0, self.filters])
                full = _is_static(r0, r1, c0, c1, height, width) and (
                    (r0, r1, c0, c1) == (0, height, 0, width))
                if not full:
                    product = tf.pad(product, [[0, 0], [r0, height - r1],
                                               [c0, width - c1], [0, 0]])
                outputs = product if outputs is None else outputs + product
        if outputs is None:  # Every tap reads padding only (an even kernel on a tiny map).
            outputs = tf.zeros([batch, height, width, self.filters], x.dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "implementation": self.implementation,
        })
        return config


@keras.saving.register_keras_serializable(package="coseg_tf")
class VGGPreprocessing(keras.layers.Layer):
    """RGB images in 0..255 to the input of the Keras VGG16 ImageNet weights.

    Flips RGB to BGR and subtracts the ImageNet channel means (103.939, 116.779,
    123.68), as `keras.applications.vgg16.preprocess_input` does ('caffe' mode).

    Args:
        **kwargs: keyword arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Example:

    >>> y = VGGPreprocessing()(tf.fill([1, 2, 2, 3], 128.0))
    >>> [round(v, 3) for v in y[0, 0, 0].numpy().tolist()]
    [24.061, 11.221, 4.32]
    """

    def call(self, inputs):
        # inputs: [B, H, W, 3] RGB in 0..255.
        bgr = tf.reverse(tf.convert_to_tensor(inputs), axis=[-1])
        return bgr - tf.constant(VGG_BGR_MEANS, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
