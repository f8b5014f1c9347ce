#!/usr/bin/env bash
# The seed report's story, played on the offline default in tmux as a person would, keys and
# all: a run whose eval loss turns up is held, its local epochs lowered, continued; then its best
# round is forked with other values of mu and the branches are compared. The screenshots (the
# TUI's own ctrl+s) land in docs/.
#
#   docs/steering_story.sh [WORK_DIR]      # needs tmux and fedtui on PATH (.venv/bin)
set -euo pipefail
docs=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
session=fedtui-story
# small data, many local epochs, a high learning rate: the eval loss is lowest at round 2
overfitting="--set name=story --set rounds=6 --set samples_per_client=32 --set eval_samples=32"
overfitting+=" --set local_epochs=10 --set learning_rate=1e-2"

wait_for() {  # wait_for PATTERN: until the run's record holds it (ten minutes at most)
  for _ in $(seq 1 1200); do
    grep -q "$1" runs/*story*/events.jsonl 2>/dev/null && return; sleep 0.5
  done
  echo "timed out waiting for $1" >&2; exit 1
}
keys() { tmux send-keys -t "$session" "$@"; sleep 1; }
screenshots() { find "$1" -maxdepth 1 -name 'screenshot-*.svg' | wc -l; }
screenshot() {  # screenshot FOLDER NAME: the TUI's ctrl+s (saved into FOLDER), as docs/NAME.svg
  local folder=$1 name=$2 before
  before=$(screenshots "$folder")
  keys C-s
  for _ in $(seq 1 60); do
    [ "$(screenshots "$folder")" -gt "$before" ] && break; sleep 0.5
  done
  cp "$(find "$folder" -maxdepth 1 -name 'screenshot-*.svg' | sort | tail -1)" "$docs/$name.svg"
}

# Closing a TUI's terminal detaches its run: should the script fail half-way, stop the run too.
cleanup() {
  for run in runs/*story*; do
    [ -d "$run" ] && { fedtui stop "$run" > /dev/null 2>&1 || true; }
  done
  tmux kill-session -t "$session" 2>/dev/null || true
}
trap cleanup EXIT

tmux kill-session -t "$session" 2>/dev/null || true
# shellcheck disable=SC2086  # the settings are words
tmux new-session -d -s "$session" -x 140 -y 50 "fedtui run $overfitting"
wait_for '"type":"round_started","round":3'
keys h                                     # hold after round 3, where the eval loss turns up
wait_for '"type":"held"'
keys f                                     # the form of live keys
keys "local_epochs=2" Enter                # fewer local epochs from round 4 on
wait_for '"type":"config_changed"'
sleep 2
run=$(ls -d runs/*story*)
screenshot "$run" steering-held
keys h                                     # go on
wait_for '"type":"run_finished"'
keys q
sleep 2

for mu in 0.01 1.0; do                     # two branches from its best round, other mu
  fedtui run --from "$run" --set proximal_mu=$mu --set rounds=3 --set name=mu-$mu \
    --headless > /dev/null
done

tmux kill-session -t "$session" 2>/dev/null || true
tmux new-session -d -s "$session" -x 140 -y 50 "fedtui replay $run"
sleep 8
screenshot "$run" steering-branches
keys q
tmux kill-session -t "$session" 2>/dev/null || true
echo "screenshots in $docs: steering-held.svg steering-branches.svg (runs in $work/runs)"
