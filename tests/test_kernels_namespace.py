"""Our `kernels` package must not be mistaken for the PyPI `kernels` (Hugging Face hub kernels).

transformers probes `find_spec("kernels")` and then the distribution version; if it believed hub kernels
were installed it would `from kernels import get_kernel` on model paths. The GPT-OSS model class must
still import and run a forward with this repository on sys.path.
"""

import importlib.util
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def test_our_kernels_package_is_the_one_found():
    spec = importlib.util.find_spec("kernels")
    assert spec is not None and Path(spec.origin).resolve().parent == REPO / "kernels"


def test_transformers_does_not_see_hub_kernels():
    from transformers.utils import is_kernels_available

    assert is_kernels_available() is False


def test_gpt_oss_forward_runs_with_our_kernels_on_path():
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(0)
    cfg = GptOssConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=8,
        max_position_embeddings=64,
    )
    model = GptOssForCausalLM(cfg).eval()
    ids = torch.randint(0, 512, (2, 11))
    with torch.no_grad():
        out = model(input_ids=ids)
    assert out.logits.shape == (2, 11, 512)
    assert torch.isfinite(out.logits).all()
