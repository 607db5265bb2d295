#!/usr/bin/env bash
# Runs the libFuzzer binaries of a FUZZ=ON build (make fuzz), each for a bounded time over
# its seeds in test/fuzz/corpus/<target>/. The repository is only read: the inputs libFuzzer
# finds and any crash are kept in BUILD/fuzz/<target>/ (new/, crash-*, log). Prints one line
# per target; exits 1 if any target crashed, hung or broke a property, with its log's end.
#
#   test/fuzz/run.sh BUILD SECONDS [TARGET...]     default: every BUILD/bin/fuzz_*
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: test/fuzz/run.sh BUILD SECONDS [TARGET...]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "$1" && pwd)
seconds=$2
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for binary in "$build"/bin/fuzz_*; do targets+=("${binary##*/fuzz_}"); done
fi

# The words the parsers know, from the declarations they are built from, so the
# dictionaries never fall behind a new command or key.
generated_words() {
  case $1 in
    control) grep '^VRELAY_COMMAND' "$root/common/commands.def" | grep -o '"[A-Z]\+"' | sort -u ;;  # names, aliases
    config)
      sed -n 's/^VRELAY_[A-Z]*(\([a-z_]*\), *\([a-z_]*\),.*/\1\n\2/p' "$root/common/config_keys.def" |
        grep . | sort -u | sed 's/.*/"&"/' ;;
    shm)
      major=$(sed -n 's/.*kLayoutMajor = \([0-9]*\);.*/\1/p' "$root/common/shm.hpp")
      printf '"\\x00\\x00\\x%02x\\x00"\n' "$major" ;;  # the version word, little-endian
  esac
}

# The last of libFuzzer's status lines of these kinds in LOG: "#N INITED cov: E ft: F corp:
# C/..." after the seeds, then NEW, REDUCE, pulse, DONE; E = edges covered, F = features
# (edges told apart by hit counts and more), C = inputs in the corpus.
coverage() {
  grep -E "^#[0-9]+[[:space:]]+($2)" "$1" | tail -1 |
    sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/\1 edges, \2 features, \3 inputs/p' || :
}

failed=()
for target in "${targets[@]}"; do
  binary=$build/bin/fuzz_$target
  seeds=$here/corpus/$target
  work=$build/fuzz/$target
  if [ ! -x "$binary" ] || [ ! -d "$seeds" ]; then
    echo "fuzz $target: no $binary or no $seeds" >&2
    failed+=("$target")
    continue
  fi
  mkdir -p "$work/new"
  dict=$work/$target.dict
  cat "$here/dict/$target.dict" > "$dict" 2>/dev/null || : > "$dict"
  generated_words "$target" >> "$dict"
  # libFuzzer writes what it finds into the first directory, and reads the seeds from the
  # second. It runs in $work, so that the config target's relative paths stay in there.
  status=0
  (cd "$work" && UBSAN_OPTIONS=print_stacktrace=1 "$binary" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -dict="$dict" -artifact_prefix="$work/" \
      "$work/new" "$seeds") > "$work/log" 2>&1 || status=$?
  seeds_cov=$(coverage "$work/log" INITED)
  final_cov=$(coverage "$work/log" 'INITED|NEW|REDUCE|pulse|DONE')
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
  if [ "$status" -eq 0 ]; then
    # "start": the seeds and what earlier runs found (new/), before any mutation.
    echo "fuzz $target: ${runs:-?} runs in ${seconds}s (${rate:-?}/s); coverage: start ${seeds_cov:-?}; end ${final_cov:-?}"
  else
    echo "fuzz $target: FAILED (exit $status); input and log in $work/" >&2
    report='^==[0-9]+==ERROR|runtime error|fuzz: property|deadly signal|ALARM|out-of-memory'
    if grep -qE "$report" "$work/log"; then
      # From the first report to its SUMMARY line: the reason and the stack.
      awk -v re="$report" '$0 ~ re { on = 1 } on { print } on && /^SUMMARY/ { exit }' "$work/log" | head -80 >&2
      grep 'Test unit written' "$work/log" >&2 || :
    else
      tail -40 "$work/log" >&2
    fi
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (reproduce: $build/bin/fuzz_TARGET CRASH_FILE)" >&2
  exit 1
fi
