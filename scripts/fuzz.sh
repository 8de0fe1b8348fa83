#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang-14 in build-fuzz/ and runs each, one
# after the other, for SECONDS (default 20) on its seed corpus. Exits 1 when any target
# crashes, leaks, hangs or trips a sanitizer; the input that did it is kept in
# build-fuzz/artifacts/<target>/. Needs the Debian packages clang-14 and libclang-rt-14-dev.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 300 cron window
#
# Inputs libFuzzer finds interesting accumulate in build-fuzz/corpus/<target>/ and seed the
# next run; the checked-in seeds (tests/fuzz/corpus/<target>/) are only read. See docs/fuzzing.md.
#
# Inputs may be up to FUZZ_MAX_LEN bytes (default 1 MiB, the API's body limit): long enough for
# values nested hundreds of thousands deep, which overflow the stack of a parser that recurses.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dag_loader config cron duration window router)
build=$root/build-fuzz
max_len=${FUZZ_MAX_LEN:-1048576}

if ! command -v clang++-14 >/dev/null; then
  echo "fuzz.sh: clang++-14 not found; install: apt-get install -y --no-install-recommends clang-14 libclang-rt-14-dev" >&2
  exit 1
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DNIGHTSHIFT_FUZZ=ON -DNIGHTSHIFT_TESTS=OFF >/dev/null
ninja -C "$build" "${targets[@]/%/_fuzz}"

# Seeds that live elsewhere in the tree: the example DAGs and configs and the test data the
# loaders' unit tests read. libFuzzer takes folders only, so they are copied into the working corpus.
extra_seeds() {
  case $1 in
    dag_loader) echo "$root"/examples/dags/*.yaml "$root"/tests/testdata/bad_dags/*.yaml ;;
    config) echo "$root"/examples/nightshift.yaml "$root"/docker/nightshift.yaml "$root"/tests/testdata/bad_configs/*.yaml ;;
  esac
}

# Seeds too big to check in: values nested 400,000 deep (about 800 KB), in the format each target
# reads. The nesting rule (core/json_limits.h) must refuse them with an error, not a crash.
deep_seeds() {
  local corpus=$1 brackets
  brackets=$(printf '%*s' 400000 '' | tr ' ' '[')$(printf '%*s' 400000 '' | tr ' ' ']')
  case $2 in
    dag_loader) printf 'params:\n  deep: %s\ntasks:\n  - {task_id: a, command: x}\n' "$brackets" >"$corpus/seed_deep" ;;
    config) printf 'pools: %s\n' "$brackets" >"$corpus/seed_deep" ;;
    router)
      printf 'POST /api/v1/dags/nightly_etl/dagRuns\nauthorization: Bearer fuzz-token\n\n{"conf":{"a":%s}}\n' \
        "$brackets" >"$corpus/seed_deep" ;;
  esac
}

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  artifacts=$build/artifacts/$target
  log=$build/logs/$target.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  for seed in $(extra_seeds "$target"); do cp "$seed" "$corpus/seed_${seed//\//_}"; done
  deep_seeds "$corpus" "$target"
  echo "fuzz.sh: $target for ${seconds}s (log: $log)"
  dict=()
  [ -f "$root/tests/fuzz/$target.dict" ] && dict=(-dict="$root/tests/fuzz/$target.dict")
  status=ok
  if ! "$build/tests/fuzz/${target}_fuzz" "$corpus" "$root/tests/fuzz/corpus/$target" "${dict[@]}" \
      -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    status=FAILED
    failed+=("$target")
    tail -n 25 "$log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  summary+=("$(printf '%-12s %8s execs in %ss  %s' "$target" "${runs:-?}" "$seconds" "$status")")
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
