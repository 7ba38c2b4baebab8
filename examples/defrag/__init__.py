"""DEFRAG on Fashion-MNIST and MNIST: the flagship example of grassmann_nn.

Paper: "DEFRAG: Deep Euclidean Feature Representations through Adaptation on the Grassmann
Manifold", Minnehan & Savakis, arXiv:1806.07688. Run ``python -m examples.defrag --help`` from
the repository root.
"""
