#!/usr/bin/env bash
# One lease of the lent H200 (session 12): the sd15 GPU bench of both samplers (issue #12), then the two branches of
# the teacher-forcing ablation (issue #11), `full` and `teacher_forcing`, trained side by side from the same stage-1
# export, so that the pair differs only in self-forcing (same machine, same CUDA random streams).
#
#   bash docs/gpu/session12.sh start DEADLINE_S    # bench, pools, start both branches; pack at DEADLINE_S
#   bash docs/gpu/session12.sh collect WAIT_S      # a follow-up call on the still-warm machine: wait, then pack
#
# Needs .whl (diffusers and peft wheels; the image has neither at our pins) and, in carry, the shipped frozen
# components and checkpoints/ablations/stage1_rerun. What comes back lands in $OUT (at most 8 files).
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
T0=$(date +%s)
el() { echo "[$(($(date +%s) - T0)) s] $*"; }
F=/tmp/F R=/tmp/runs
VARIANTS="full teacher_forcing"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD

progress() {
  for v in $VARIANTS; do
    for s in stage2 stage3; do
      m=$R/$v/train/$s/metrics.jsonl
      [ -f "$m" ] && echo "  $v $s: $(tail -n 1 "$m" | cut -c1-200)"
    done
  done
}

pack() {
  el "packing"
  for v in $VARIANTS; do
    [ -d "$R/$v" ] || continue
    # the exports and the stages' reports (a mid-stage state, 70-80 MB, is over what may come back: 16 MiB a file)
    (cd "$R/$v" && tar czf "$OUT/$v.tgz" --exclude='*/states' --exclude='cache' --exclude='*.npz' \
       starcaster starcaster_pipeline.json scheduler train 2>/dev/null)
  done
  cp $R/*.log "$OUT/" 2>/dev/null
  ls -la "$OUT"
}

case "${1:-start}" in
start)
  DEADLINE=${2:-540}
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | head -2;
    python3 -c "import torch, diffusers, transformers, peft, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"; } \
    | tee "$OUT/machine.txt"
  mkdir -p $F $R
  cp -r checkpoints/tiny/{vae,face_encoder,lip_reader,unet,text_encoder,tokenizer} $F/
  cp -r checkpoints/ablations/stage1_rerun/{starcaster,train} $F/
  # Stage 2's pools render on the CPUs while the GPU runs the bench; then stage 3's, while the branches train.
  (STARCASTER_RENDER_WORKERS=12 OMP_NUM_THREADS=4 python3 docs/gpu/render_pools.py $F stage2 &&
   STARCASTER_RENDER_WORKERS=10 OMP_NUM_THREADS=2 python3 docs/gpu/render_pools.py $F stage3) > $R/pools.log 2>&1 &
  el "sd15 bench"
  python3 -m starcaster bench --preset sd15 --random-weights --json "$OUT/sd15_gpu.json" > $R/bench_sd15.log 2>&1
  el "bench exit $?"; tail -n 12 $R/bench_sd15.log
  until grep -q "stage2: pools ready" $R/pools.log 2>/dev/null; do
    sleep 2; [ $(($(date +%s) - T0)) -gt $DEADLINE ] && { el "pools not ready"; cat $R/pools.log; pack; exit 1; }
  done
  el "$(cat $R/pools.log)"
  for v in $VARIANTS; do  # setsid: a follow-up call can collect them if they outlast this one
    setsid nohup env OMP_NUM_THREADS=4 python3 docs/gpu/gpu_train.py train --ablation $v --base $F --out $R/$v \
      > $R/$v.log 2>&1 < /dev/null &
  done
  WAIT=$DEADLINE
  ;;
collect)
  WAIT=$(($(date +%s) - T0 + ${2:-120}))
  ;;
esac

while [ $(($(date +%s) - T0)) -lt "$WAIT" ]; do
  sleep 20
  el "progress"; progress
  all=1; for v in $VARIANTS; do [ -f $R/$v/train/stage3/done.json ] || all=0; done
  [ $all = 1 ] && break
done
for v in $VARIANTS; do grep -m 3 -i "error\|traceback" $R/$v.log && tail -n 20 $R/$v.log; done
pack
