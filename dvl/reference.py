"""Published tables dvl's models are measured against (``../shared/
REFERENCE.md``) that span several variants or scalings: EfficientNet's paper
MACs, MobileNetV1's Tables 4, 6 and 7 and EfficientNet's Table 3. Each
registered variant's own published params and MACs are in its spec
(``dvl.models.spec.Reference``).
"""

# EfficientNet's paper figures for B4/B5 sit ~4% below every count made from
# the reference code ("may differ ... due to rounding"): 5% of the paper.
EFFICIENTNET_PAPER_MACS_M = {
    'efficientnet_b0': 390, 'efficientnet_b1': 700, 'efficientnet_b2': 1_000,
    'efficientnet_b3': 1_800, 'efficientnet_b4': 4_200,
    'efficientnet_b5': 9_900, 'efficientnet_b6': 19_000,
    'efficientnet_b7': 37_000,
}

# MobileNetV1 paper Tables 6 (width α), 7 (resolution) and 4 (full
# convolutions). Rows: label, model fields, input side, MACs (M), params (M),
# MAC tolerance (M). The paper prints params to 0.1 M: within 0.05 M.
MOBILENET_V1_TABLES = (
    ('alpha 0.75', dict(width=0.75), 224, 325, 2.6, 1),
    ('alpha 0.5', dict(width=0.5), 224, 149, 1.3, 1),
    ('alpha 0.25', dict(width=0.25), 224, 41, 0.5, 1),
    ('rho 192', dict(resolution_multiplier=192 / 224), 192, 418, 4.2, 1),
    ('rho 160', dict(resolution_multiplier=160 / 224), 160, 290, 4.2, 1),
    ('rho 128', dict(resolution_multiplier=128 / 224), 128, 186, 4.2, 1),
    ('full convolution', dict(separable=False), 224, 4866, 29.3, 5),
)

# EfficientNet paper Table 3: baseline, scaled by, (d, w, r), MACs (G), top-1.
# The paper gives no coefficients for the MobileNetV2 and ResNet-50
# "compound" rows; dvl uses φ = 2 of α=1.2, β=1.1, γ=1.15 there.
TABLE3 = (
    ('mobilenet_v1', 'baseline', (1, 1, 1), 0.6, 70.6),
    ('mobilenet_v1', 'width w=2', (1, 2, 1), 2.2, 74.2),
    ('mobilenet_v1', 'resolution r=2', (1, 1, 2), 2.2, 72.7),
    ('mobilenet_v1', 'compound d=1.4, w=1.2, r=1.3', (1.4, 1.2, 1.3), 2.3, 75.6),
    ('mobilenet_v2', 'baseline', (1, 1, 1), 0.3, 72.0),
    ('mobilenet_v2', 'depth d=4', (4, 1, 1), 1.2, 76.8),
    ('mobilenet_v2', 'width w=2', (1, 2, 1), 1.1, 76.4),
    ('mobilenet_v2', 'resolution r=2', (1, 1, 2), 1.2, 74.8),
    ('mobilenet_v2', 'compound (phi=2)', (1.2 ** 2, 1.1 ** 2, 1.15 ** 2), 1.3,
     77.4),
    ('resnet50', 'baseline', (1, 1, 1), 4.1, 76.0),
    ('resnet50', 'depth d=4', (4, 1, 1), 16.2, 78.1),
    ('resnet50', 'width w=2', (1, 2, 1), 14.7, 77.7),
    ('resnet50', 'resolution r=2', (1, 1, 2), 16.4, 77.5),
    ('resnet50', 'compound (phi=2)', (1.2 ** 2, 1.1 ** 2, 1.15 ** 2), 16.7,
     78.8),
)
