#!/usr/bin/env bash
# The sweep-speed measurements that need an accelerator, in one call.
#
#     bash benchmarks/accelerator_checks.sh            # all four, logs in $OUT
#     CHECKS="compile input" bash benchmarks/accelerator_checks.sh
#
# compile  EfficientNet-B0 and B7 train steps at 600x600, bfloat16, batch 8,
#          scanned, cold (no persistent cache): compile seconds, images/s and
#          the kernels each step spends most time in.
# input    CIFAR-10: input pipeline images/s against train-step images/s,
#          for the device pipeline and for tf.data.
# packing  the default sweep's first populations: one process against two
#          pool workers sharing the device.
# search   the main job (the README's first command), timed end to end.
#
# Each check runs under `timeout` ($LIMIT seconds, default 300) so that one
# that hangs (B7 unrolled at 600x600 did not compile in 4.5 minutes on an
# H100) leaves time for the others; a check that times out says so. RES and
# BATCH shrink the compile check (for a dry run on a CPU). Logs go to $OUT
# (default: a new temporary folder), one file per check.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d -t accelerator-checks-XXXX)}
LIMIT=${LIMIT:-300}
RES=${RES:-600}
BATCH=${BATCH:-8}
CHECKS=${CHECKS:-compile input packing search}
mkdir -p "$OUT"
echo "logs in $OUT"

run() {  # run NAME COMMAND...: the command's output, filtered, and its time
  local name=$1
  shift
  echo "== $name: $*"
  local start=$SECONDS
  timeout "$LIMIT" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep -Ev '^(W|I)[0-9]{4} |WARNING|^  warnings.warn|CropAndResize' \
    "$OUT/$name.log" | tail -40
  if [ "$rc" -eq 124 ]; then
    echo "-- $name: stopped after ${LIMIT} s (timeout)"
  else
    echo "-- $name: exit $rc after $((SECONDS - start)) s"
  fi
}

for check in $CHECKS; do
  case $check in
    compile)
      JAX_ENABLE_COMPILATION_CACHE=false run compile \
        python benchmarks/train_step.py \
        --models efficientnet_b0,efficientnet_b7 --batch "$BATCH" \
        --resolution "$RES" --dtype bfloat16 --scan on --steps 10 --kernels 8
      ;;
    input)
      for pipeline in device tfdata; do
        run "input_$pipeline" python benchmarks/train_vs_input.py \
          --config experiments/cifar10.py \
          --config.input.pipeline="$pipeline" --steps 50
      done
      ;;
    packing)
      run packing python benchmarks/packing.py --populations 4 --steps 60
      ;;
    search)
      run search python launch.py --config experiments/scaling_search.py \
        --workdir "$OUT/search"
      ;;
    *)
      echo "unknown check '$check'; choose from: compile input packing search"
      exit 2
      ;;
  esac
done
