# Scoring image: GPT-OSS-20B teacher scoring with vLLM on CUDA (also runs prepare and report).
# Build from the repository root:  docker build -f docker/score.Dockerfile -t vpmoe-score .
# Versions: deps/versions.txt (tests/test_containers.py checks this file against it).
# Weights are mounted at run time (e.g. -v /models/gpt-oss-20b:/models/gpt-oss-20b:ro), never baked in.
ARG BASE_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    VLLM_ENABLE_V1_MULTIPROCESSING=1 \
    VPMOE_CACHE=/var/cache/vpmoe
WORKDIR /opt/vpmoe

# Pinned dependencies first (their layer survives code changes).
COPY deps/versions.txt deps/versions.txt
COPY tools/pins.py tools/pins.py
RUN python3 tools/pins.py score > /tmp/requirements.txt \
 && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY pyproject.toml README.md ./
COPY vpmoe vpmoe
COPY kernels kernels
COPY pipelines pipelines
COPY conf conf
RUN python3 -m pip install --no-cache-dir --no-deps -e . \
 && python3 -c "from vpmoe.tokenizer import load_harmony; load_harmony()"

# The only entry path: docker run ... vpmoe-score pipelines.<stage> key=value ...
ENTRYPOINT ["python3", "-m"]
CMD ["pipelines.score", "--help"]
