"""SmoothQuant factors for the bundled embedder's feed-forward output projections.

Those projections read GELU activations in which a few channels run tens of times larger than
the rest, so one int8 scale per batch loses the small ones. SmoothQuant (Xiao et al., 2023)
divides channel j by s_j = max|x_j|^α / max|w_j|^(1-α) and multiplies the weights' row j by it:
the product is unchanged and both sides quantise well. max|x_j| is measured here by running the
float32 graph over a corpus bundled with the package (``data/calibration.txt``, written for it,
on subjects apart from bench/data/retrieval_eval.json so that the quality measured there is
fair); α is chosen on the corpus too (:func:`chosen_alpha`). That takes minutes, so the factors
are kept in the package beside the corpus, named by the weights' fingerprint, and made again only
by ``python -m openbailian.knowledge.e5calibrate`` (tests/knowledge/test_e5calibrate.py checks
they are what the corpus gives).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from openbailian.knowledge.e5onnx import (
    E5Weights,
    _batches,
    _feed,
    _Tokenizer,
    _Window,
    _windows,
    build_graph,
    smoothing_file,
)

if TYPE_CHECKING:
    import onnx

__all__ = ["CORPUS", "activation_maxima", "chosen_alpha", "corpus", "embeddings", "factors_from"]

CORPUS = Path(__file__).parent / "data" / "calibration.txt"  # the factors are kept beside it


def corpus() -> list[str]:
    """The calibration passages, as the embedder sees documents."""
    return ["passage: " + text.strip() for text in CORPUS.read_text(encoding="utf-8").split("\n\n") if text.strip()]


def activation_maxima(weights: E5Weights, texts: list[str]) -> np.ndarray:
    """max |GELU output| per layer and channel over the real tokens of ``texts``: [layers, ffn],
    by the float32 graph (int8 kernels differ between CPUs: AVX2's and AVX-512 VNNI's activations
    were a median 3% apart, more than a tenth of the corpus moves them)."""
    from onnx import TensorProto, helper

    model = build_graph(weights, int8=False)
    activations = [n.output[0] for n in model.graph.node if n.op_type == "Gelu"]
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in activations)
    session = _session_of(model)
    maxima = np.zeros((weights.layers, weights.ffn), np.float32)
    for batch in _batches(_windows(_Tokenizer(weights).ids(texts), weights)):
        feed = _feed(weights, [w.ids for w in batch])
        real = feed["mask"].astype(bool)
        for layer, values in enumerate(session.run(activations, feed)):
            np.maximum(maxima[layer], np.abs(values[real]).max(axis=0), out=maxima[layer])
    return maxima


def factors_from(weights: E5Weights, maxima: np.ndarray, alpha: float) -> np.ndarray:
    """s = max|x|^α / max|w|^(1-α) per channel, w the projection's row for that channel."""
    factors = np.ones_like(maxima)
    for layer in range(weights.layers):
        rows = np.abs(weights.matrix(f"l{layer}.fo.w", weights.hidden)).max(axis=0)  # [ffn]
        factors[layer] = np.maximum(maxima[layer], 1e-5) ** alpha / np.maximum(rows, 1e-5) ** (1 - alpha)
    return factors.astype(np.float32)


def embeddings(weights: E5Weights, model: onnx.ModelProto, texts: list[str]) -> np.ndarray:
    """Unit vectors of ``texts`` by ``model``, each from its first 510 tokens."""
    session = _session_of(model)
    first: dict[int, _Window] = {}
    for window in _windows(_Tokenizer(weights).ids(texts), weights):
        first.setdefault(window.text, window)
    vectors = np.zeros((len(texts), weights.hidden), np.float32)
    for batch in _batches(list(first.values())):
        vectors[[w.text for w in batch]] = session.run(["pooled"], _feed(weights, [w.ids for w in batch]))[0]
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def _session_of(model: onnx.ModelProto) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def chosen_alpha(weights: E5Weights, texts: list[str], alphas: list[float]) -> float:
    """The α whose int8 vectors of half the corpus, calibrated on the other half, keep closest
    (mean cosine) to the float32 projection's: chosen on the corpus, not the evaluation set."""
    measured, held_out = texts[0::2], texts[1::2]
    maxima = activation_maxima(weights, measured)
    reference = embeddings(weights, build_graph(weights), held_out)
    closeness = {
        alpha: float((embeddings(weights, build_graph(weights, factors_from(weights, maxima, alpha)), held_out) * reference).sum(axis=1).mean())
        for alpha in alphas
    }
    for alpha, cosine in closeness.items():
        print(f"alpha {alpha:.2f}: mean cosine {cosine:.5f}", file=sys.stderr)
    return max(closeness, key=closeness.__getitem__)


def main() -> None:
    weights, texts = E5Weights(), corpus()
    alpha = chosen_alpha(weights, texts, [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    factors = factors_from(weights, activation_maxima(weights, texts), alpha)
    np.savez(smoothing_file(weights), factors=factors, alpha=np.float32(alpha))
    print(f"alpha {alpha}: wrote {smoothing_file(weights)}", file=sys.stderr)


if __name__ == "__main__":
    main()
