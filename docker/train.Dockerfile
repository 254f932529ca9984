# Training image: the Megatron Core student with Transformer Engine (NGC PyTorch base).
# Build from the repository root:  docker build -f docker/train.Dockerfile -t vpmoe-train .
# Versions: deps/versions.txt (tests/test_containers.py checks this file against it).
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:25.10-py3
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    VPMOE_CACHE=/var/cache/vpmoe \
    NCCL_NVLS_ENABLE=0 \
    TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
    NVSHMEM_DISABLE_NVLS=1
WORKDIR /opt/vpmoe

# Pinned dependencies first (their layer survives code changes). torch, triton and Transformer Engine
# come from the base image.
COPY deps/versions.txt deps/versions.txt
COPY tools/pins.py tools/pins.py
RUN python3 tools/pins.py train > /tmp/requirements.txt \
 && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY pyproject.toml README.md ./
COPY vpmoe vpmoe
COPY kernels kernels
COPY pipelines pipelines
COPY conf conf
RUN python3 -m pip install --no-cache-dir --no-deps -e . \
 && python3 -c "from vpmoe.tokenizer import load_harmony; load_harmony()"

# The only entry path: torchrun ... -m pipelines.train key=value ...  or  docker run ... pipelines.<stage>
ENTRYPOINT ["python3", "-m"]
CMD ["pipelines.train", "--help"]
