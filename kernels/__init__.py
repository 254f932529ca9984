"""Loss-head kernels (Triton + a PyTorch reference).

Kept light on purpose: importing the package imports neither torch nor triton; ``from kernels import
sparse_kl`` loads kernels.sparse_kl_head on first use, and triton is imported only when impl="triton" runs.
"""

__all__ = ["NO_ID", "SparseKLResult", "sparse_kl"]


def __getattr__(name: str):
    if name in __all__:
        from kernels import sparse_kl_head

        return getattr(sparse_kl_head, name)
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
