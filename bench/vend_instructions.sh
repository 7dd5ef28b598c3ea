#!/bin/bash
# Python instructions per vend of a checkout, load-independent (issue 10's "no slower" count):
#
#     bench/vend_instructions.sh /path/to/checkout [/path/to/another ...]
#
# For each checkout (a worktree with .venv linked in): bench/vend_profile.py --fresh, then the
# whole process under valgrind's callgrind at N=20 and N=220 vends; per vend = the difference / 200.
# Run checkouts one after the other: they share bench/vend_profile.py's database. Needs valgrind.
set -euo pipefail
export PYTHONHASHSEED=0
for tree in "$@"; do
  cd "$tree"
  N=1 .venv/bin/python bench/vend_profile.py --fresh > /dev/null 2>&1
  declare -A collected
  for n in 20 220; do
    collected[$n]=$(N=$n valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/vend_profile.py 2>&1 \
      | awk '/Collected/ {print $NF}')
  done
  echo "$tree $(git -C "$tree" rev-parse --short HEAD): $(( (collected[220] - collected[20]) / 200 )) instructions per vend"
  cd - > /dev/null
done
