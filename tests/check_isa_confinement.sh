#!/usr/bin/env bash
# The program must run on any x86-64 CPU: AVX, AVX-512 and AMX instructions may
# appear only in kernel functions whose names say the ISA (avx2, avx512, amx).
# Catches a kernel flag leaking into shared code, including inline functions
# the linker took from a kernel's translation unit. Give it the program and
# the static library (every object, linked into the program or not).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: check_isa_confinement.sh BINARY_OR_ARCHIVE..."; exit 2; }
command -v objdump >/dev/null || { echo "objdump not found (package binutils)"; exit 1; }

objdump -d --no-show-raw-insn -C "$@" | awk '
  /^[0-9a-f]+ <.*>:$/ { fn = substr($0, index($0, "<") + 1); fn = substr(fn, 1, length(fn) - 2); next }
  /file format|^In archive|^Disassembly of/ { fn = ""; next }
  NF < 2 { next }
  {
    line = $0
    sub(/^[ \t]*[0-9a-f]+:[ \t]*/, "", line)
    split(line, parts, /[ \t]+/)
    mnemonic = parts[1]
    needs = ""
    if (line ~ /%zmm|%k[0-7]/) needs = "avx512"
    else if (line ~ /%tmm|tileloadd|tilestored|ldtilecfg|tdpb/) needs = "amx"
    else if (mnemonic ~ /^v/ || line ~ /%ymm/) needs = "avx"
    if (needs == "") next
    allowed = (fn ~ /avx512|amx/) || (needs == "avx" && fn ~ /avx2/)
    if (allowed && !(fn in kernels)) { kernels[fn] = 1; kernel_count++ }
    if (!allowed && !(fn in reported)) {
      reported[fn] = 1
      printf "%s instruction outside an ISA kernel: %s\n    in %s\n", needs, line, substr(fn, 1, 200)
      bad = 1
    }
  }
  END {
    if (kernel_count == 0) { print "no ISA kernel found: the check would pass vacuously"; exit 1 }
    if (!bad) printf "ISA-specific instructions are confined to %d ISA kernel functions\n", kernel_count
    exit bad
  }
'
