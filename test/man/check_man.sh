#!/usr/bin/env bash
# Checks the man pages against the code, for the CTest tests of test/man (label "man"):
# lint cleanliness, and that every option, counter and configuration key is documented.
#
#   check_man.sh mandoc PAGE [MANDOC]          mandoc -Tlint -W warning prints nothing
#   check_man.sh groff PAGE [GROFF]            groff -ww -z -man prints nothing
#   check_man.sh options VRELAYD SRCDIR        every option of `vrelayd --help` is in
#                                              OPTIONS of man/vrelayd.8, and no other
#   check_man.sh counters VRELAYD SRCDIR       every counter of common/counters.def is in
#                                              COUNTERS of man/vrelayd.8 as group.name
#                                              with its kind and help text, and no other
#   check_man.sh config-keys VRELAYD SRCDIR    every key of config/vrelay.yaml is in KEYS
#                                              of man/vrelay.yaml.5, and no other; the keys
#                                              of `vrelayd --help-config` are those of
#                                              config/vrelay.yaml
#   check_man.sh check-config VRELAYD SRCDIR   vrelayd --check-config accepts the example
#   check_man.sh options-tool TOOL PAGE        every option of `TOOL --help` is in
#                                              OPTIONS of PAGE, and no other (vrelayctl,
#                                              vrelaystat, vrelay-probe)
#   check_man.sh protocol VRELAYD SRCDIR       every command name and alias declared in
#                                              common/commands.def is in a .TP
#                                              entry of COMMANDS of man/vrelay-protocol.7
#                                              (aliases in their command's entry) and no
#                                              other command is; the page quotes the HELP
#                                              reply; every error word of common/errors.def has
#                                              a .TP entry in ERROR CODES, and no other
#   check_man.sh all VRELAYD SRCDIR            options, counters, config-keys,
#                                              check-config and protocol
#
# Man pages escape hyphens (\-) and fonts (\fB): text is normalized before it is compared.
set -u

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# Man source -> plain text lines: font escapes dropped, \- and \(aq made plain, other
# backslashes removed. Macro names (.TP, .B, ...) are kept at the start of their lines.
normalize() {
  sed -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e "s/\\\\(aq/'/g" -e 's/\\(oq//g' -e 's/\\(cq//g' \
      -e 's/\\(lq//g' -e 's/\\(rq//g' -e 's/\\-/-/g' -e 's/\\&//g' -e 's/\\c//g' \
      -e 's/\\//g' "$1"
}

# Lines of one .SH section (its heading excluded) of normalized man text on stdin.
section() {
  awk -v want="$1" '
    /^\.SH / { name = $0; sub(/^\.SH +/, "", name); gsub(/"/, "", name); inside = (name == want); next }
    inside { print }'
}

# The tag lines of .TP entries (the line right after each .TP) of text on stdin.
tags() {
  awk '/^\.TP/ { grab = 1; next } grab { print; grab = 0 }'
}

# Word-bounded fixed string: is $1 in the text $2, not as part of a longer name?
has_word() {
  local word="$1" text="$2" re
  re=$(printf '%s' "$word" | sed 's/[.[\*^$/]/\\&/g')
  printf '%s\n' "$text" | grep -Eq -- "(^|[^A-Za-z0-9_.-])${re}([^A-Za-z0-9_-]|$)"
}

lint() {
  local tool="$1" page="$2" prog="$3" out rc
  if [ ! -f "$page" ]; then
    fail "$page: no such page"
    return
  fi
  if [ -z "$prog" ] || ! command -v "$prog" >/dev/null 2>&1; then
    local package="$tool"
    [ "$tool" = groff ] && package=groff-base
    fail "$tool is not installed (Debian package $package)"
    return
  fi
  if [ "$tool" = mandoc ]; then
    out=$("$prog" -Tlint -W warning "$page" 2>&1)
  else
    out=$("$prog" -ww -z -man "$page" 2>&1)
  fi
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    fail "$page: $tool reported problems (status $rc)"
  fi
}

check_options() {
  local bin="$1" page="$2" help opts_tags line short long arg w found
  help=$("$bin" --help) || { fail "$bin --help failed"; return; }
  opts_tags=$(normalize "$page" | section OPTIONS | tags)
  [ -n "$opts_tags" ] || { fail "$page: no .TP entries in OPTIONS"; return; }
  local count=0
  # Option lines of --help: "  -c, --config FILE   text" or "      --control HOST:PORT text".
  while IFS= read -r line; do
    short=$(printf '%s\n' "$line" | sed -nE 's/^ +(-[A-Za-z0-9]), --.*/\1/p')
    long=$(printf '%s\n' "$line" | sed -nE 's/^ +(-[A-Za-z0-9], )?(--[a-z0-9-]+).*/\2/p')
    arg=$(printf '%s\n' "$line" | sed -nE 's/^ +(-[A-Za-z0-9], )?--[a-z0-9-]+ ([A-Z][A-Z:]*)( .*|$)/\2/p')
    [ -n "$long" ] || continue
    count=$((count + 1))
    found=$(printf '%s\n' "$opts_tags" | while IFS= read -r t; do has_word "$long" "$t" && printf '%s\n' "$t"; done)
    if [ -z "$found" ]; then
      fail "$page: option $long of --help has no .TP entry in OPTIONS"
      continue
    fi
    if [ -n "$short" ] && ! has_word "$short" "$found"; then
      fail "$page: the OPTIONS entry of $long does not name its short form $short"
    fi
    for w in $(printf '%s' "$arg" | tr ':' ' '); do
      has_word "$w" "$found" || fail "$page: the OPTIONS entry of $long does not name its argument $arg"
    done
  done < <(printf '%s\n' "$help" | grep -E '^ +(-[A-Za-z0-9], )?--[a-z]')
  [ $count -gt 0 ] || fail "found no options in '$bin --help'"
  # And the other way: the page documents no option that --help does not print.
  local help_longs
  help_longs=$(printf '%s\n' "$help" | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
  for long in $(printf '%s\n' "$opts_tags" | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
    printf '%s\n' "$help_longs" | grep -qxF -- "$long" || fail "$page: OPTIONS documents $long, which --help does not print"
  done
  echo "options: checked $count options of --help against $page"
}

check_counters() {
  local def="$1" page="$2" text counters_tags total parsed group name kind help entry
  [ -f "$def" ] || { fail "$def: missing"; return; }
  text=$(normalize "$page")
  counters_tags=$(printf '%s\n' "$text" | section COUNTERS | tags)
  total=$(grep -c '^VRELAY_COUNTER(' "$def")
  parsed=$(sed -nE 's/^VRELAY_COUNTER\(([a-z_0-9]+), *([a-z_0-9]+), *(counter|gauge), *"(.*)"\) *$/\1 \2 \3 \4/p' "$def")
  if [ "$(printf '%s\n' "$parsed" | grep -c .)" -ne "$total" ]; then
    fail "$def: some VRELAY_COUNTER lines do not read as (group, name, counter|gauge, \"help\")"
  fi
  [ "$total" -gt 0 ] || fail "$def: no counters found"
  # The page's text as one line, to find help texts that the renderer may have wrapped.
  local flat
  flat=$(printf '%s\n' "$text" | grep -v '^\.' | tr '\n' ' ' | tr -s ' ')
  while read -r group name kind help; do
    entry=$(printf '%s\n' "$counters_tags" | grep -E "^\.BR? +${group}\.${name}( |$)")
    if [ -z "$entry" ]; then
      fail "$page: counter ${group}.${name} has no .TP entry in COUNTERS (run scripts/man-counters.sh)"
      continue
    fi
    has_word "$kind" "$entry" || fail "$page: counter ${group}.${name} is not marked ($kind)"
    printf '%s\n' "$flat" | grep -qF -- "$help" || fail "$page: the help text of ${group}.${name} is missing: $help"
  done <<< "$parsed"
  # And the other way: no counter in the page that counters.def does not declare.
  local documented
  for documented in $(printf '%s\n' "$counters_tags" | sed -nE 's/^\.BR? +([a-z_0-9]+\.[a-z_0-9]+).*/\1/p'); do
    printf '%s\n' "$parsed" | awk '{ print $1 "." $2 }' | grep -qxF -- "$documented" ||
      fail "$page: COUNTERS documents $documented, which $def does not declare"
  done
  echo "counters: checked $total counters of $def against $page"
}

# Dotted paths of the keys of a YAML file written in block style with 2-space indents,
# marking sections (keys with keys below them) with a trailing '/'.
yaml_paths() {
  awk '
    /^[ ]*#/ || /^[ ]*$/ { next }
    /^[ ]*- / { next }
    match($0, /^[ ]*[A-Za-z_][A-Za-z0-9_]*:/) {
      indent = match($0, /[^ ]/) - 1
      key = substr($0, indent + 1); sub(/:.*/, "", key)
      depth = indent / 2
      path[depth] = key
      full = key
      for (i = depth - 1; i >= 0; --i) full = path[i] "." full
      print full
    }' "$1" | awk '
    { order[NR] = $0; seen[$0] = 1 }
    END {
      for (i = 1; i <= NR; ++i) {
        p = order[i]; section = 0
        for (q in seen) if (index(q, p ".") == 1) section = 1
        print p (section ? "/" : "")
      }
    }'
}

check_config_keys() {
  local example="$1" page="$2" bin="$3" paths leaves keys_tags p
  [ -f "$example" ] || { fail "$example: missing"; return; }
  paths=$(yaml_paths "$example")
  leaves=$(printf '%s\n' "$paths" | grep -v '/$')
  [ -n "$leaves" ] || { fail "$example: no keys found"; return; }
  keys_tags=$(normalize "$page" | section KEYS | tags)
  local count=0
  for p in $leaves; do
    count=$((count + 1))
    printf '%s\n' "$keys_tags" | grep -qxE -- "\.B +$(printf '%s' "$p" | sed 's/\./\\./g')" ||
      fail "$page: key $p of $example has no '.B $p' entry in KEYS"
  done
  # And the other way: every key the page documents is in the example.
  for p in $(printf '%s\n' "$keys_tags" | sed -nE 's/^\.B +([a-z_][a-z0-9_.]*)$/\1/p'); do
    printf '%s\n' "$leaves" | grep -qxF -- "$p" || fail "$page: KEYS documents $p, which $example does not list"
  done
  # The keys the program declares (common/config_keys.def, shown by --help-config) and the
  # example's are the same: a key added to the declarations goes into the example and the page.
  local declared
  declared=$("$bin" --help-config | sed -nE 's/^([a-z_][a-z0-9_.]*): .*/\1/p')
  [ -n "$declared" ] || fail "$bin --help-config printed no key"
  for p in $declared; do
    printf '%s\n' "$leaves" | grep -qxF -- "$p" || fail "$example: $bin declares the key $p, which the example does not list"
  done
  for p in $leaves; do
    printf '%s\n' "$declared" | grep -qxF -- "$p" || fail "$example: lists $p, which $bin does not declare"
  done
  echo "config-keys: checked $count keys of $example against $page"
}

check_config_example() {
  local bin="$1" example="$2" out
  out=$("$bin" --check-config -c "$example" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] || ! printf '%s\n' "$out" | grep -q 'is valid'; then
    printf '%s\n' "$out" >&2
    fail "$bin --check-config -c $example: status $rc"
  else
    printf '%s\n' "$out"
  fi
}

# The commands of common/commands.def, one per line: the name, then its aliases, from
# entries written VRELAY_COMMAND(Id, "NAME", ("ALIAS", ...), ...).
protocol_commands() {
  grep -E '^VRELAY_COMMAND\(' "$1" | sed -E 's/^VRELAY_COMMAND\([A-Za-z]+, *("[^"]*"), *\(([^)]*)\).*/\1 \2/' |
    while IFS= read -r entry; do
      printf '%s\n' "$entry" | grep -oE '"[^"]*"' | tr -d '"' | paste -sd ' ' -
    done
}

check_protocol() {
  local commands="$1" errors_def="$2" page="$3" f
  for f in "$commands" "$errors_def" "$page"; do
    [ -f "$f" ] || { fail "$f: missing"; return; }
  done
  local text entries n_entries
  text=$(normalize "$page")

  # The declared commands.
  entries=$(protocol_commands "$commands")
  n_entries=$(printf '%s\n' "$entries" | grep -c .)
  [ "$n_entries" -gt 0 ] || { fail "$commands: no VRELAY_COMMAND entries found"; return; }
  [ "$n_entries" -eq "$(grep -cE '^VRELAY_COMMAND\(' "$commands")" ] ||
    fail "$commands: some entries do not read as VRELAY_COMMAND(Id, \"NAME\", (\"ALIAS\", ...), ...)"

  # Every name has a .TP entry in COMMANDS, and its aliases are in the same entry.
  local command_tags line name word found help="OK"
  command_tags=$(printf '%s\n' "$text" | section COMMANDS | tags)
  [ -n "$command_tags" ] || { fail "$page: no .TP entries in COMMANDS"; return; }
  while IFS= read -r line; do
    name=${line%% *}
    help="$help $line"
    found=$(printf '%s\n' "$command_tags" | while IFS= read -r t; do has_word "$name" "$t" && printf '%s\n' "$t"; done)
    if [ -z "$found" ]; then
      fail "$page: command $name has no .TP entry in COMMANDS"
      continue
    fi
    for word in ${line#"$name"}; do
      has_word "$word" "$found" || fail "$page: the COMMANDS entry of $name does not name its alias $word"
    done
  done <<< "$entries"
  # And the other way: an entry of COMMANDS whose tag starts with a word in capitals is
  # one of the table's commands (not a command that was removed or renamed).
  local names
  names=$(printf '%s\n' "$entries" | awk '{ print $1 }')
  for word in $(printf '%s\n' "$command_tags" | sed -E 's/^\.[A-Z]+ +//' | tr -d '"' | awk '{ print $1 }' |
                sed 's/,$//' | grep -E '^[A-Z]{2,}$' | sort -u); do
    printf '%s\n' "$names" | grep -qxF -- "$word" ||
      fail "$page: COMMANDS has an entry for $word, which is not a command of $commands"
  done
  # The page quotes the reply to HELP: every name and alias in the table's order.
  printf '%s\n' "$text" | grep -qxF -- "$help" || fail "$page: does not quote the HELP reply as one line: $help"

  # Every declared error word has a .B entry in ERROR CODES, and no other.
  local errors n_errors error_tags
  errors=$(sed -nE 's/^VRELAY_ERROR\([A-Za-z]+, *"([^"]*)"\).*/\1/p' "$errors_def")
  n_errors=$(printf '%s\n' "$errors" | grep -c .)
  [ "$n_errors" -gt 0 ] || { fail "$errors_def: no VRELAY_ERROR entries found"; return; }
  error_tags=$(printf '%s\n' "$text" | section "ERROR CODES" | tags)
  for word in $errors; do
    printf '%s\n' "$error_tags" | grep -qxE -- "\.B +$word" || fail "$page: error word $word has no '.B $word' entry in ERROR CODES"
  done
  for word in $(printf '%s\n' "$error_tags" | sed -nE 's/^\.B +([a-z-]+)$/\1/p'); do
    printf '%s\n' "$errors" | grep -qxF -- "$word" || fail "$page: ERROR CODES documents $word, which $errors_def does not declare"
  done
  echo "protocol: checked $n_entries commands ($(printf '%s\n' "$entries" | wc -w) names and aliases) and $n_errors error words against $page"
}

usage() {
  echo "usage: $0 mandoc|groff PAGE [PROGRAM] | options|counters|config-keys|check-config|protocol|all VRELAYD SRCDIR" >&2
  echo "       $0 options-tool TOOL PAGE" >&2
  exit 2
}

[ $# -ge 2 ] || usage
what="$1"
case "$what" in
  mandoc) lint mandoc "$2" "${3:-mandoc}" ;;
  groff) lint groff "$2" "${3:-groff}" ;;
  options-tool)
    [ $# -eq 3 ] || usage
    [ -x "$2" ] || { echo "FAIL: $2 is not an executable" >&2; exit 1; }
    check_options "$2" "$3"
    ;;
  options | counters | config-keys | check-config | protocol | all)
    [ $# -eq 3 ] || usage
    bin="$2"
    src="$3"
    [ -x "$bin" ] || { echo "FAIL: $bin is not an executable" >&2; exit 1; }
    case "$what" in options | all) check_options "$bin" "$src/man/vrelayd.8" ;; esac
    case "$what" in counters | all) check_counters "$src/common/counters.def" "$src/man/vrelayd.8" ;; esac
    case "$what" in config-keys | all) check_config_keys "$src/config/vrelay.yaml" "$src/man/vrelay.yaml.5" "$bin" ;; esac
    case "$what" in check-config | all) check_config_example "$bin" "$src/config/vrelay.yaml" ;; esac
    case "$what" in protocol | all)
      check_protocol "$src/common/commands.def" "$src/common/errors.def" "$src/man/vrelay-protocol.7" ;;
    esac
    ;;
  *) usage ;;
esac

if [ $failures -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
exit 0
