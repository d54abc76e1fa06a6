#!/bin/sh
# run.sh [SECONDS] [OUTDIR] -- build the libFuzzer harness(es) and fuzz for SECONDS (default 25).
#
# The library is compiled here directly with clang (configure picks gcc by default, and
# libFuzzer needs clang), with ASan, UBSan and coverage instrumentation; nothing from
# an autotools build is used.  OUTDIR (default ./san-fuzz) holds the objects, the
# harness, the corpus (kept between runs, so coverage accumulates) and any crash
# (OUTDIR/artifacts/).  A crash, a leak, a sanitizer report or a timeout fails the run;
# the script then prints how to replay the input:  OUTDIR/fuzz_chan ARTIFACT
#
# Environment: CLANG (default clang, else clang-14), FUZZ_JOBS (parallel fuzzing
# processes, default 1), FUZZ_FLAGS (more libFuzzer flags).
set -eu

secs=${1:-25}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${2:-$PWD/san-fuzz}
mkdir -p "$out/obj" "$out/corpus" "$out/artifacts"
out=$(cd "$out" && pwd)

cc=${CLANG:-}
if test -z "$cc"; then
    for c in clang clang-14; do
        if command -v $c >/dev/null 2>&1; then cc=$c; break; fi
    done
fi
if test -z "$cc"; then
    echo "fuzz: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi

case $(uname -m) in
x86_64) sw=switch_x86_64.S ;;
aarch64 | arm64) sw=switch_aarch64.S ;;
*) echo "fuzz: no context switch routine for $(uname -m)" >&2; exit 1 ;;
esac

# The library's only configure result it needs.
cat >"$out/config.h" <<EOF
#define PACKAGE_VERSION "fuzz"
EOF

cflags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -pthread
        -I$out -I$top/include -I$top/src
        -fsanitize=address,undefined -fno-sanitize-recover=undefined"

build_start=$(date +%s)
objs=
for src in "$top"/src/*.c "$top/src/$sw"; do
    obj=$out/obj/$(basename "$src").o
    if ! test -f "$obj" || test "$src" -nt "$obj" || test -n "$(find "$top/src" "$top/include" -name '*.h' -newer "$obj")"; then
        $cc $cflags -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
    objs="$objs $obj"
done
for h in fuzz_chan; do
    $cc $cflags -fsanitize=fuzzer "$here/$h.c" $objs -o "$out/$h"
done
echo "fuzz: built with $cc in $(($(date +%s) - build_start)) s"

# A few hand-made seeds, so the short run starts from scripts that reach every mode.
seed() { printf "$2" >"$out/corpus/seed-$1"; }
seed thread-alone '\000\003\001\012\023\034\000\000\005\001\015\002\026\003\012\004\013\005'
seed task-partner '\003\003\001\012\023\034\016\001\021\002\024\003\032\004\015\005\033\006'
seed thread-thread '\004\002\011\002\040\000\016\001\021\002\026\003\032\004\025\005'

export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
jobs=
if test "${FUZZ_JOBS:-1}" -gt 1; then
    jobs="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS" # each job logs to $out/fuzz-N.log
fi
start=$(date +%s)
status=0
cd "$out"
"$out/fuzz_chan" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=1024 \
    -print_final_stats=1 $jobs -artifact_prefix="$out/artifacts/" ${FUZZ_FLAGS:-} \
    "$out/corpus" >"$out/fuzz.log" 2>&1 || status=$?
grep -E '^stat::|^#[0-9]+ *DONE|INFO: Loaded|corpus' "$out/fuzz.log" | tail -n 8 || true
if test $status -ne 0; then
    tail -n 60 "$out/fuzz.log" >&2
    echo "fuzz: FAILED after $(($(date +%s) - start)) s; replay a crash with:" >&2
    ls "$out/artifacts" | sed "s|^|    $out/fuzz_chan $out/artifacts/|" >&2
    exit 1
fi
echo "fuzz: no crash, leak, report or timeout in $(($(date +%s) - start)) s" \
     "($(ls "$out/corpus" | wc -l) inputs in the corpus)"
