#!/usr/bin/env bash
# Assemble a new shipped tiny folder from a trained branch, then distil its fast model (issue #11).
#
#     bash docs/eval/dev/ship_branch.sh BRANCH OUT [RECORDS...]
#     e.g. bash docs/eval/dev/ship_branch.sh /work/runs/lip025_cam /work/runs/ship /work/runs/lip_0.25 /work/runs/F
#
# BRANCH is a training folder whose stages 1-3 and stage3_camera are finished (an `--ablation camera_after` run
# from a branch's stage-3 export). OUT gets checkpoints/tiny's frozen prerequisites (VAE, face encoder, lip reader,
# 2D UNet, fast decoder, evaluators, ...) with the branch's starcaster/ and its training records for stages 1-3 and
# stage3_camera (each stage's metrics.jsonl from the first of BRANCH, RECORDS... that has it: a branch keeps only
# its own stages' logs, its base has the earlier ones); the old fast model and its record are left out, and the recipe's `distill` step makes them again
# from the new teacher. Copy OUT over checkpoints/tiny once the held-out table has been run on it.
# Run again on an OUT it assembled (train/lineage.json there), it skips the assembly and resumes distillation
# from OUT's latest saved state: distillation outlasts a session on 2 cores. SHIP_ASSEMBLE_ONLY=1 stops after the
# assembly (to put a distillation state saved elsewhere into OUT/train/distill/states before resuming it).
set -euo pipefail
branch="${1:?usage: ship_branch.sh BRANCH OUT [RECORDS...]}"; out="${2:?usage: ship_branch.sh BRANCH OUT [RECORDS...]}"
shift 2
cd "$(dirname "$0")/../../.."
for stage in stage1 stage2 stage3 stage3_camera; do
  [ -f "$branch/train/$stage/done.json" ] || { echo "$branch has not finished $stage" >&2; exit 1; }
done
if [ -f "$out/train/lineage.json" ]; then
  echo "$out was assembled before: resuming its distillation" >&2
else
  [ -e "$out" ] && { echo "$out exists but was not assembled by this script: pick a new folder" >&2; exit 1; }
  mkdir -p "$out/train"
  for component in checkpoints/tiny/*; do
    case "$(basename "$component")" in starcaster|train|fast_model|fast_scheduler) ;; *) cp -r "$component" "$out/" ;; esac
  done
  cp -r "$branch/starcaster" "$out/starcaster"
  cp checkpoints/tiny/train/recipe_report.json "$out/train/"  # the prerequisites' entries; distill's is replaced
  for step in checkpoints/tiny/train/*/; do  # prerequisites' records (vae, arc2face, evaluators, ...): unchanged
    case "$(basename "$step")" in stage1|stage2|stage3|stage3_camera|distill) ;; *) cp -r "$step" "$out/train/" ;; esac
  done
  for stage in stage1 stage2 stage3 stage3_camera; do
    mkdir -p "$out/train/$stage"
    cp "$branch/train/$stage/done.json" "$out/train/$stage/"
    for records in "$branch" "$@"; do
      if [ -f "$records/train/$stage/metrics.jsonl" ]; then cp "$records/train/$stage/metrics.jsonl" "$out/train/$stage/"; break; fi
    done
    [ -f "$out/train/$stage/metrics.jsonl" ] || echo "warning: no metrics.jsonl for $stage (train --report will miss it)" >&2
  done
  cp "$branch/train/ablation.json" "$out/train/lineage.json"  # where the branch came from
  if [ -d "$branch/cache" ]; then ln -s "$(readlink -f "$branch/cache")" "$out/cache"; fi  # the stage pools distill renders too
fi
[ -n "${SHIP_ASSEMBLE_ONLY:-}" ] && exit 0
python -m starcaster train --recipe tiny --only distill --resume --out "$out"
# The recipe report: distill's entry was just written; the stages' entries come from their done.json.
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); report = out / "train" / "recipe_report.json"
entries = json.loads(report.read_text())
for stage in ("stage1", "stage2", "stage3", "stage3_camera"):
    entries[stage] = json.loads((out / "train" / stage / "done.json").read_text())
report.write_text(json.dumps(entries, indent=2, default=str) + "\n")
PY
