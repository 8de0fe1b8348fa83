#!/usr/bin/env bash
# Builds and runs every test twice: the normal build (build/) and the AddressSanitizer +
# UndefinedBehaviorSanitizer build (build-asan/). Exit status is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# A real single-node Slurm for the Slurm executor's tests, when the CI scripts are beside the
# project (../shared/ci); without it those tests say why they skip.
if [ -f ../shared/ci/slurm-up.sh ] && [ "$(id -u)" -eq 0 ]; then
  bash ../shared/ci/slurm-up.sh || echo "Slurm did not come up; its tests will skip"
fi
export NIGHTSHIFT_ARTIFACTS="$PWD/build/artifacts"

scripts/build.sh build
(cd build && ctest --output-on-failure -j2)

scripts/build.sh build-asan -DNIGHTSHIFT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
# The sanitizers make every process many times slower: the scale test runs 5,000 instances here
# instead of 100,000 (the normal build above runs the full size).
export NIGHTSHIFT_SCALE_INSTANCES=5000
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j2)

# Every libFuzzer target for a short, fixed time (docs/fuzzing.md has the long runs).
scripts/fuzz.sh 10

# The compose file must stay valid; there is no Docker engine here, so validate it only.
if command -v docker-compose >/dev/null; then
  docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"
fi
echo "all tests passed"
