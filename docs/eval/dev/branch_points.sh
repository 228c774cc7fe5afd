#!/usr/bin/env bash
# The ablations' branch points, restored from the repository's history onto a new machine (issue #11).
#
#     bash docs/eval/dev/branch_points.sh RUNS        # e.g. /work/runs; makes RUNS/F and RUNS/full_stage2_export
#
# Training folders live outside the repository and go with the machine; the two exports every stage-2 or stage-3
# branch starts from were committed once (fp32) and removed when their rows finished, so they come back from git:
#   RUNS/F                    the shipped prerequisites + the stage-1 rerun's export (b73f7a5), stage 1 marked done:
#                             --base for no-stage-1 branches (full, teacher_forcing, lip_weight=W)
#   RUNS/full_stage2_export   the full row's stage-2 export (d74e973): --branch-from for camera_lr10, camera_first,
#                             camera_alone and camera_noise, e.g.
#   python -m starcaster train --ablation camera_noise --base RUNS/F --out RUNS/camera_noise \
#       --branch-from RUNS/full_stage2_export/starcaster
set -euo pipefail
runs="${1:?usage: branch_points.sh RUNS}"
cd "$(dirname "$0")/../../.."

restore() {  # restore COMMIT SOURCE_DIR DEST_DIR: every file under SOURCE_DIR at COMMIT
  local commit="$1" source="$2" dest="$3"
  mkdir -p "$dest"
  git ls-tree -r --name-only "$commit" -- "$source" | while read -r path; do
    mkdir -p "$dest/$(dirname "${path#"$source"/}")"
    git show "$commit:$path" > "$dest/${path#"$source"/}"
  done
}

F="$runs/F"
mkdir -p "$F/train/stage1"
for component in vae face_encoder lip_reader unet text_encoder tokenizer evaluators; do
  cp -r "checkpoints/tiny/$component" "$F/"
done
restore b73f7a5 checkpoints/ablations/stage1_rerun/starcaster "$F/starcaster"
git show b73f7a5:checkpoints/ablations/stage1_rerun/train/stage1/done.json > "$F/train/stage1/done.json"
git show b73f7a5:checkpoints/ablations/stage1_rerun/train/stage1/metrics.jsonl > "$F/train/stage1/metrics.jsonl"
restore d74e973 checkpoints/ablations/full/starcaster "$runs/full_stage2_export/starcaster"
echo "stage-1 base: $F; stage-2 export: $runs/full_stage2_export/starcaster"
