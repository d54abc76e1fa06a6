#!/bin/sh
# Prints the version kept in include/threadplex.h: "MAJOR.MINOR.PATCH", or with -l the
# libtool -version-info "CURRENT:REVISION:AGE".  The header is the only place it lives.
h="$(dirname "$0")/../include/threadplex.h"
get() { sed -n "s/^#define $1 *\([0-9][0-9]*\).*/\1/p" "$h"; }
if [ "$1" = -l ]; then
    printf '%s:%s:%s' "$(get TP_ABI_CURRENT)" "$(get TP_ABI_REVISION)" "$(get TP_ABI_AGE)"
else
    printf '%s.%s.%s' "$(get TP_VERSION_MAJOR)" "$(get TP_VERSION_MINOR)" "$(get TP_VERSION_PATCH)"
fi
