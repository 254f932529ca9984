#!/usr/bin/env bash
# The distillation-quality study end to end (docs/quality.md), stage by stage or all at once:
#
#   bash benchmarks/quality/reproduce.sh all          # a machine with a GPU, vllm and the repo's env
#   bash benchmarks/quality/reproduce.sh data         # CPU:  corpus + preparation (~15 s)
#   bash benchmarks/quality/reproduce.sh teacher      # GPU:  the teacher (~100 s on one H200)
#   bash benchmarks/quality/reproduce.sh score        # CPU:  top-64 and 3 sampled stores + reports (~60 min, 2 cores)
#   bash benchmarks/quality/reproduce.sh reference    # CPU:  the teacher's full softmax on the held-out text (~2-5 min)
#   bash benchmarks/quality/reproduce.sh study        # GPU:  7 arms x 3 seeds (~7 min on one H200, 6 runs at a time)
#   bash benchmarks/quality/reproduce.sh table        # any:  the merged table of every study.json
#
# Where the GPU is another machine (this project's lent H200), run `data`, `score` and `reference` here and
# `teacher` and `study` there, carrying the prepared split, a store and the reference (the top-k arms:
# ~61 MB; the sampled arms: 20-40 MB) and the cp312 wheels the GPU machine lacks (docs/quality.md "Reproducing").
set -euo pipefail
cd "$(dirname "$0")/../.."
# the repo's env where it exists (make env), else the machine's python (the GPU machine); PY= overrides
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
REAL=data/real
STUDY=$REAL/study
TEACHER=$REAL/teacher-real-h64
OUT=${STUDY_OUT:-runs/quality}
REFERENCE=$STUDY/reference_m16.npz

stores() {  # the top-64 store and the three sampled stores of the study split (after `score`)
  local root
  root=$STUDY/store/$(ls "$STUDY/store" | grep -v logs | head -1)
  TOPK=$(ls -d "$root"/*-k64 | head -1)
  SAMP=$(ls -d "$root"/*-k64-s50 | head -1)
  SAMP1024=$(ls -d "$root"/*-k1024-s50 | head -1)
  SAMP1024N32=$(ls -d "$root"/*-k1024-s32 | head -1)
}

stage_data() {
  $PY tools/build_real_corpus.py --install --output $REAL/real_corpus.parquet
  $PY -m pipelines.prepare input=$REAL/real_corpus.parquet output=$REAL/prepared
  # the study split: every held-out row, 50% of the others (the teacher trains on the full corpus's split)
  $PY tools/build_real_corpus.py --output $STUDY/corpus.parquet --train-share 0.5
  $PY -m pipelines.prepare input=$STUDY/corpus.parquet output=$STUDY/prepared
}

stage_teacher() {
  $PY benchmarks/quality/train_teacher.py --dataset $REAL/prepared --out $TEACHER --epochs 14 \
    --tokens 13000000 --max-seconds 170
}

stage_score() {
  # top-64; N = 50 draws from the (64+1)-way distribution; N = 50 and N = 32 from the (1024+1)-way one
  for mode in "teacher.storage=topk teacher.k=64" "teacher.storage=sampled teacher.samples=50 teacher.k=64" \
    "teacher.storage=sampled teacher.samples=50 teacher.k=1024" \
    "teacher.storage=sampled teacher.samples=32 teacher.k=1024"; do
    # shellcheck disable=SC2086
    $PY -m pipelines.score dataset=$STUDY/prepared teacher=cpu teacher.model=$TEACHER $mode output=$STUDY/store
  done
  stores
  $PY -m pipelines.report store="$TOPK" dataset=$STUDY/prepared output=$STUDY/report_topk
  $PY -m pipelines.report store="$SAMP" dataset=$STUDY/prepared output=$STUDY/report_sampled
  $PY -m pipelines.report store="$SAMP1024" dataset=$STUDY/prepared output=$STUDY/report_sampled_k1024
  $PY -m pipelines.report store="$SAMP1024N32" dataset=$STUDY/prepared output=$STUDY/report_sampled_k1024_n32
}

stage_reference() {  # the teacher's full softmax at every held-out position, checked against the top-64 store
  stores
  $PY benchmarks/quality/teacher_reference.py --teacher $TEACHER --dataset $STUDY/prepared --store "$TOPK" \
    --out $REFERENCE --draws 16
}

stage_study() {
  stores
  $PY benchmarks/quality/study.py --dataset $STUDY/prepared --store "$TOPK" --sampled-store "$SAMP" \
    --sampled-store-k1024 "$SAMP1024" --sampled-store-k1024-n32 "$SAMP1024N32" --reference $REFERENCE \
    --out "$OUT" --seeds 1 2 3 --parallel 6
}

stage_table() {
  $PY benchmarks/quality/study_table.py "${@:-$OUT/study.json}"
}

case "${1:-}" in
  data) stage_data ;;
  teacher) stage_teacher ;;
  score) stage_score ;;
  reference) stage_reference ;;
  study) stage_study ;;
  table) shift; stage_table "$@" ;;
  all) stage_data; stage_teacher; stage_score; stage_reference; stage_study; stage_table ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
