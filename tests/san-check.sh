#!/bin/sh
# san-check.sh KIND TREE BUILD [MAKE] -- run the whole `make check` of the source tree TREE,
# configured in BUILD for KIND (asan, tsan or valgrind), and fail on any report.
#
# Called by `make check-asan`, `make check-tsan` and `make check-valgrind`
# (tests/reliability.am), which first copy the sources into TREE with `make distdir`.
#
# How a report becomes a failure: every test program runs its tests in forked children
# (Check's fork mode).  The runtime options below make the first report end the process
# with a distinctive exit status (or abort); Check reports a child that exits non-zero
# or dies as a failed test even after its assertions passed, the parent's own exit status
# is checked by the automake harness, and the script fails when `make check` does.
set -eu

kind=$1
tree=$(cd "$2" && pwd)
build=$3
make=${4:-${MAKE:-make}}
here=$(cd "$(dirname "$0")" && pwd)

case $kind in
asan)
    conf=--enable-asan
    # halt_on_error/abort_on_error: stop at the first report, with SIGABRT.
    # detect_leaks: LeakSanitizer at the exit of every process (each test's child too).
    # check_initialization_order, strict_init_order: cheap, and catch init-order bugs.
    # detect_stack_use_after_return stays off: tasks' frames are copied off and back onto
    # the shared stack, and the fake-stack machinery would add nothing the copy-stack
    # rule (no pointers into a parked task's stack) does not already forbid.
    ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1
    UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
    LSAN_OPTIONS=exitcode=23
    CK_TIMEOUT_MULTIPLIER=4
    export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS CK_TIMEOUT_MULTIPLIER
    ;;
tsan)
    conf=--enable-tsan
    # halt_on_error + exitcode: the first race ends the process with status 66.
    # report_signal_unsafe=0: the stack-overflow handler deliberately calls abort().
    TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:report_signal_unsafe=0:suppressions=$here/tsan.supp"
    CK_TIMEOUT_MULTIPLIER=10
    export TSAN_OPTIONS CK_TIMEOUT_MULTIPLIER
    ;;
valgrind)
    conf=--enable-valgrind
    # Every test program (and, through Check's fork mode, every test) runs under memcheck;
    # an error or a definite leak makes it exit 97.  Valgrind runs one thread at a time,
    # and by default a thread that spins can take the lock straight back: a test whose
    # task spins until a task on another worker runs then gave up after 10 s in about one
    # run in three of two test programs side by side.  --fair-sched=yes hands the lock
    # round in order (0 of 6 such runs failed).
    LOG_COMPILER_ARG="LOG_COMPILER=valgrind --quiet --fair-sched=yes --error-exitcode=97 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --child-silent-after-fork=no"
    CK_TIMEOUT_MULTIPLIER=30
    export CK_TIMEOUT_MULTIPLIER
    ;;
*)
    echo "usage: $0 asan|tsan|valgrind TREE BUILD [MAKE]" >&2
    exit 2
    ;;
esac

mkdir -p "$build"
cd "$build"
if ! test -f config.status || ! grep -q -- "$conf" config.status; then
    echo "san-check: configuring $build ($conf)"
    "$tree/configure" -q "$conf" >configure.log 2>&1 || {
        cat configure.log
        exit 1
    }
fi

start=$(date +%s)
status=0
rm -f test-suite.log # so that a build failure does not show an earlier run's results
if test "$kind" = valgrind; then
    $make check "$LOG_COMPILER_ARG" || status=$?
else
    $make check || status=$?
fi
end=$(date +%s)
if test $status -ne 0; then
    if test -f test-suite.log; then
        echo "san-check: $kind: FAILED ($((end - start)) s); the failing tests' logs:" >&2
        cat test-suite.log >&2
    else
        echo "san-check: $kind: FAILED ($((end - start)) s) before running the tests (see above)" >&2
    fi
    exit $status
fi
echo "san-check: $kind: every test passed with no report ($((end - start)) s)"
