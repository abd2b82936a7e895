"""The tiny untrained (or briefly trained) networks that the reading and CLI tests build checkpoints from.

One place for their sizes, so that a new required network argument (as `stem` was) is added once. A test that
needs other sizes overrides them: {**TINY_LINE_NET, "width": 8, "fc_dim": 16}.
"""

TINY_CHAR_NET = {"num_blocks": 1, "width": 4, "dropout": 0.2}
TINY_LINE_NET = {
    "width": 4,
    "fc_dim": 8,
    "window_width": 28,
    "window_stride": 8,
    "dropout": 0.2,
    "head": "none",
    "stem": "strided",
}
