#!/bin/sh
# check_man.sh -- keeps the manual honest.  Run by `make check` (see man/man.am).
#
#  1. The public header, the pages in man/ and the list in man/man.am agree: every
#     function declared in include/threadplex.h has a page named after it (a real page
#     or a one-line `.so man3/other.3` link), every section-3 page is named after a
#     declared function, and man.am installs exactly the pages that are in man/.
#  2. Each real page has the usual sections, its NAME line names every function it
#     documents, and its SYNOPSIS shows each of those functions with the very prototype
#     the header declares (compared with white space normalized).
#  3. Each page renders without warnings (groff -ww, mandoc -Tlint -W warning, with
#     whichever of the two is installed; the test fails if neither is).
#  4. The program in each EXAMPLES section (the .EX/.EE block that includes
#     <threadplex.h>) compiles without warnings against the header; when the library
#     has been built, it is also linked and run, and must exit 0.
#
# Environment (man/man.am sets it): TP_MAN_SRCDIR (top source dir), TP_MAN_BUILDDIR (top
# build dir), TP_MAN_CC, TP_MAN_CFLAGS, TP_MAN_LDFLAGS.  Run by hand from a build dir:
#   TP_MAN_SRCDIR=.. sh ../tests/check_man.sh
# Exit status: 0 pass, 1 fail, 99 hard error (automake conventions).
set -u
LC_ALL=C
export LC_ALL

src=${TP_MAN_SRCDIR:-${srcdir:-.}}
build=${TP_MAN_BUILDDIR:-.}
cc=${TP_MAN_CC:-${CC:-cc}}
cflags=${TP_MAN_CFLAGS:--std=gnu11 -Wall -Wextra -pthread}
ldflags=${TP_MAN_LDFLAGS:--pthread}
hdr=$src/include/threadplex.h
mandir=$src/man
am=$src/man/man.am

for f in "$hdr" "$am"; do
    [ -r "$f" ] || { echo "check_man: cannot read $f (set TP_MAN_SRCDIR)"; exit 99; }
done
build=$(cd "$build" && pwd) || exit 99
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_man.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 99' HUP INT TERM

failed=0
fail() {
    echo "FAIL: $*"
    failed=1
}

# ------------------------------------------------------------------ helpers ----

# The function declarations of C text (a file, or stdin), one per line and normalized:
# comments, preprocessor lines and braces dropped, statements split at ';', white space
# reduced to the single spaces that separate two words.
c_decls() {
    awk '
        { line = $0 }
        incomment { if (!sub(/.*\*\//, "", line)) next; incomment = 0 }
        {
            while (match(line, /\/\*/)) {
                rest = substr(line, RSTART + 2)
                if (match(rest, /\*\//)) {
                    line = substr(line, 1, index(line, "/*") - 1) " " substr(rest, RSTART + 2)
                } else {
                    line = substr(line, 1, index(line, "/*") - 1)
                    incomment = 1
                }
            }
            sub(/\/\/.*/, "", line)
            if (line ~ /^[ \t]*#/) next
            printf "%s ", line
        }' "$@" |
        tr ';' '\n' |
        sed -e 's/.*[{}]//' -e 's/[[:space:]][[:space:]]*/ /g' \
            -e 's/ *\([^A-Za-z0-9_ ]\) */\1/g' -e 's/^ //' -e 's/ $//' |
        grep '^[^(]*[^A-Za-z0-9_]tp_[a-z0-9_]*(' || true
}

# The name declared by each line of c_decls output, "name<TAB>declaration".
decl_names() {
    sed -n 's/^\([^(]*[^A-Za-z0-9_]\)\(tp_[a-z0-9_]*\)(.*$/\2	&/p'
}

# Text of one section of a page (".SH NAME" .. next ".SH"), request lines included.
section() { # page, section title
    awk -v want="$2" '
        /^\.SH[ \t]/ {
            t = $0; sub(/^\.SH[ \t]+/, "", t); gsub(/"/, "", t)
            on = (t == want); next
        }
        on' "$1"
}

# Plain text of roff lines: font macro arguments joined as roff joins them (.B and .I
# with spaces, the alternating .BI/.BR/... without), quotes, font escapes and the usual
# special characters undone.
roff_text() {
    awk '
        function unescape(s) {
            gsub(/\\e/, "\001", s)
            gsub(/\\f[BIRP]/, "", s); gsub(/\\f\[[A-Z]*\]/, "", s)
            gsub(/\\-/, "-", s); gsub(/\\\(aq/, "\047", s); gsub(/\\\(dq/, "\"", s)
            gsub(/\\\(ti/, "~", s); gsub(/\\\(ha/, "^", s); gsub(/\\&/, "", s)
            gsub(/\\ /, " ", s); gsub(/\001/, "\\", s)
            return s
        }
        /^\.(B|I|BI|IB|BR|RB|IR|RI)[ \t]/ {
            sep = ($0 ~ /^\.[BI][ \t]/) ? " " : ""
            s = $0; sub(/^\.[A-Z]+[ \t]+/, "", s); out = ""; n = 0
            while (length(s)) {
                if (match(s, /^[ \t]+/)) {
                    s = substr(s, RLENGTH + 1); continue
                }
                if (substr(s, 1, 1) == "\"") {
                    s = substr(s, 2); i = index(s, "\"")
                    if (!i) i = length(s) + 1
                    arg = substr(s, 1, i - 1); s = substr(s, i + 1)
                } else {
                    match(s, /^[^ \t"]+/); arg = substr(s, 1, RLENGTH)
                    s = substr(s, RLENGTH + 1)
                }
                out = out (n++ ? sep : "") arg
            }
            print unescape(out); next
        }
        /^\.\\"/ || /^\./ { next }
        { print unescape($0) }'
}

# The example programs of a page: every .EX/.EE block of EXAMPLES that includes
# <threadplex.h>, unescaped, written to $2.1.c, $2.2.c, ...  Prints how many.
examples() { # page, output prefix
    section "$1" EXAMPLES | awk -v out="$2" '
        function unescape(s) {
            gsub(/\\e/, "\001", s)
            gsub(/\\-/, "-", s); gsub(/\\\(aq/, "\047", s); gsub(/\\\(dq/, "\"", s)
            gsub(/\\\(ti/, "~", s); gsub(/\\\(ha/, "^", s); gsub(/\\&/, "", s)
            gsub(/\001/, "\\", s)
            return s
        }
        /^\.EX/ { inex = 1; body = ""; next }
        /^\.EE/ {
            inex = 0
            if (body ~ /#include <threadplex\.h>/) {
                n++; f = out "." n ".c"; printf "%s", body > f; close(f)
            }
            next
        }
        inex { body = body unescape($0) "\n" }
        END { print n + 0 }'
}

is_link() { head -n 1 "$1" | grep -q '^\.so '; }

# ------------------------------------------------ 1. header, pages and man.am ----

c_decls "$hdr" | decl_names | sort -u > "$tmp/decls"
cut -f1 "$tmp/decls" > "$tmp/funcs"
[ -s "$tmp/funcs" ] || { echo "check_man: found no tp_ functions in $hdr"; exit 99; }

(cd "$mandir" && ls) | sed -n 's/^\(.*\)\.3$/\1/p' | sort > "$tmp/pages3"
(cd "$mandir" && ls) | grep '\.[0-9]$' | sort > "$tmp/files"

for f in $(comm -23 "$tmp/funcs" "$tmp/pages3"); do
    fail "$f() is declared in include/threadplex.h but has no page man/$f.3"
done
for f in $(comm -13 "$tmp/funcs" "$tmp/pages3"); do
    fail "man/$f.3 documents no function declared in include/threadplex.h"
done
[ -f "$mandir/threadplex.7" ] || fail "the overview page man/threadplex.7 is missing"

# Pages named in man.am (any word of the form man/NAME.N), whatever the variable.
# shellcheck disable=SC1003,SC2016,SC2020 # literal $(srcdir); tr maps characters
sed 's/#.*//' "$am" | tr ' \t\\' '\n\n\n' | sed -n 's,^\$(srcdir)/,,; s,^man/\([^/]*\.[0-9]\)$,\1,p' |
    sort -u > "$tmp/listed"
for f in $(comm -23 "$tmp/files" "$tmp/listed"); do
    fail "man/$f exists but man/man.am does not install it"
done
for f in $(comm -13 "$tmp/files" "$tmp/listed"); do
    fail "man/man.am installs man/$f, which does not exist"
done
if ! cmp -s "$tmp/files" "$tmp/listed"; then
    echo "     the lists for man/man.am, from the pages in man/:"
    for n in 3 7; do
        grep "\\.$n\$" "$tmp/files" | awk -v n="$n" '
            BEGIN { printf "\ndist_man%s_MANS =", n }
            { printf " \\\n\tman/%s", $0 }
            END { print "" }'
    done
fi

# Links: one line, ".so man3/TARGET.3", and the target is a real page.
: > "$tmp/links"
for p in "$mandir"/*.3; do
    is_link "$p" || continue
    name=$(basename "$p" .3)
    if [ "$(wc -l < "$p")" -ne 1 ]; then
        fail "man/$name.3: a link page must be the single line .so man3/TARGET.3"
        continue
    fi
    target=$(sed -n 's,^\.so man3/\([^ /]*\)\.3$,\1,p' "$p")
    if [ -z "$target" ] || [ ! -f "$mandir/$target.3" ]; then
        fail "man/$name.3: $(cat "$p") does not name a page in man/"
    elif is_link "$mandir/$target.3"; then
        fail "man/$name.3 links to man/$target.3, which is itself a link"
    else
        printf '%s\t%s\n' "$target" "$name" >> "$tmp/links"
    fi
done

# ---------------------------------------------- 2. sections, NAME, SYNOPSIS ----

for p in "$mandir"/*.3 "$mandir"/*.7; do
    [ -f "$p" ] || continue
    is_link "$p" && continue
    page=$(basename "$p")
    name=${page%.?}
    case $page in
    *.3) required="NAME|LIBRARY|SYNOPSIS|DESCRIPTION|RETURN VALUE|ERRORS|EXAMPLES|SEE ALSO" ;;
    *) required="NAME|DESCRIPTION|EXAMPLES|SEE ALSO" ;;
    esac
    sections=$(sed -n 's/^\.SH[ \t]*//p' "$p" | tr -d '"')
    oldifs=$IFS
    IFS='|'
    for s in $required; do
        printf '%s\n' "$sections" | grep -qx "$s" || fail "$page has no $s section"
    done
    IFS=$oldifs
    case $page in *.3) ;; *) continue ;; esac

    # The functions this page documents: itself and the links that point to it.
    documented="$name $(awk -F'\t' -v t="$name" '$1 == t { print $2 }' "$tmp/links")"
    namesec=$(section "$p" NAME | roff_text | tr '\n' ' ')
    section "$p" SYNOPSIS | roff_text | c_decls | decl_names > "$tmp/synopsis"
    for f in $documented; do
        printf '%s\n' "$namesec" | grep -Eq "(^|[ ,])$f([ ,]|$)" ||
            fail "$page: NAME does not list $f"
        want=$(awk -F'\t' -v f="$f" '$1 == f { print $2 }' "$tmp/decls")
        [ -n "$want" ] || continue # reported above
        grep -qxF "$(printf '%s\t%s' "$f" "$want")" "$tmp/synopsis" ||
            fail "$page: SYNOPSIS lacks the header's prototype of $f: $want"
    done
    # Prototypes shown in SYNOPSIS must match the header, whichever function they are.
    while IFS='	' read -r f shown; do
        want=$(awk -F'\t' -v f="$f" '$1 == f { print $2 }' "$tmp/decls")
        if [ -z "$want" ]; then
            fail "$page: SYNOPSIS shows $f, which the header does not declare"
        elif [ "$want" != "$shown" ]; then
            fail "$page: SYNOPSIS shows $shown but the header declares $want"
        fi
    done < "$tmp/synopsis"
done

# --------------------------------------------------------------- 3. rendering ----

real_pages=
for p in "$mandir"/*.3 "$mandir"/*.7; do
    [ -f "$p" ] && ! is_link "$p" && real_pages="$real_pages $p"
done
linted=0
if command -v groff > /dev/null 2>&1; then
    linted=1
    for p in $real_pages; do
        out=$(groff -man -ww -z "$p" 2>&1)
        [ -z "$out" ] || fail "groff warns about $(basename "$p"):
$out"
    done
else
    echo "note: groff not found, skipping groff -ww"
fi
if command -v mandoc > /dev/null 2>&1; then
    linted=1
    for p in $real_pages; do
        out=$(mandoc -man -Tlint -W warning "$p" 2>&1)
        [ -z "$out" ] || fail "mandoc warns about $(basename "$p"):
$out"
    done
else
    echo "note: mandoc not found, skipping mandoc -Tlint"
fi
[ "$linted" = 1 ] || fail "neither groff nor mandoc is installed: cannot check rendering (Debian: apt-get install groff mandoc)"

# ---------------------------------------------------------------- 4. examples ----

lib=
if [ -f "$build/.libs/libthreadplex.a" ]; then
    lib="$build/.libs/libthreadplex.a"
elif [ -f "$build/.libs/libthreadplex.so" ]; then
    lib="-L$build/.libs -lthreadplex -Wl,-rpath,$build/.libs"
else
    echo "note: $build/.libs holds no built library: examples are compiled, not run"
fi
runner=
command -v timeout > /dev/null 2>&1 && runner="timeout 60"

nex=0
nran=0
for p in $real_pages; do
    page=$(basename "$p")
    n=$(examples "$p" "$tmp/${page%.?}_${page##*.}")
    if [ "$n" -eq 0 ]; then
        fail "$page: EXAMPLES has no program (an .EX block that includes <threadplex.h>)"
        continue
    fi
    i=1
    while [ "$i" -le "$n" ]; do
        base="$tmp/${page%.?}_${page##*.}.$i"
        i=$((i + 1))
        nex=$((nex + 1))
        # shellcheck disable=SC2086 # flags are word lists
        if ! out=$($cc $cflags -I"$src/include" -c "$base.c" -o "$base.o" 2>&1) ||
            [ -n "$out" ]; then
            fail "the example of $page does not compile cleanly:
$out"
            continue
        fi
        [ -n "$lib" ] || continue
        # shellcheck disable=SC2086
        if ! out=$($cc $cflags "$base.o" -o "$base" $lib $ldflags 2>&1); then
            fail "the example of $page does not link:
$out"
            continue
        fi
        if ! out=$(cd "$tmp" && $runner "$base" 2>&1 < /dev/null); then
            fail "the example of $page exits with a failure:
$out"
        fi
        nran=$((nran + 1))
    done
done

echo "check_man: $(wc -l < "$tmp/funcs") functions, $(wc -l < "$tmp/files") pages," \
    "$nex examples compiled, $nran linked and run"
[ "$failed" = 0 ] || exit 1
exit 0
