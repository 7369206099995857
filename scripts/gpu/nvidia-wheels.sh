#!/usr/bin/env bash
# Makes cuBLASLt and NCCL available to the build on a machine without them (no GPU needed): the NVIDIA Python wheels
# nvidia-cublas (nvidia/cu13/{include,lib}) and nvidia-nccl-cu13 (nvidia/nccl/{include,lib}), about 640 MB, fetched
# with `pip download` into a cache outside the repository and unpacked there. Downloads only what is missing.
# Prints the unpacked `nvidia` folder on stdout (use it as CLIPO_NVIDIA_ROOT); exits 1 saying why when the wheels
# cannot be had.
# usage: bash scripts/gpu/nvidia-wheels.sh [CACHE_DIR]   (default: $XDG_CACHE_HOME or ~/.cache, then clipo/nvidia-wheels)
set -uo pipefail
cache="${1:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/clipo/nvidia-wheels}"
root="$cache/root/nvidia"
have() { [ -f "$root/cu13/include/cublasLt.h" ] && ls "$root"/cu13/lib/libcublasLt.so* >/dev/null 2>&1 &&
         [ -f "$root/nccl/include/nccl.h" ] && ls "$root"/nccl/lib/libnccl.so* >/dev/null 2>&1; }
if have; then echo "$root"; exit 0; fi
mkdir -p "$cache" || { echo "nvidia-wheels: cannot create $cache" >&2; exit 1; }
pip=""
for p in pip3 pip; do command -v "$p" >/dev/null 2>&1 && { pip="$p"; break; }; done
[ -n "$pip" ] || { echo "nvidia-wheels: no pip on this machine" >&2; exit 1; }
for pkg in nvidia-cublas nvidia-nccl-cu13; do
  whl_glob="$cache/$(echo "$pkg" | tr - _)-*.whl"
  if ! ls $whl_glob >/dev/null 2>&1; then
    echo "nvidia-wheels: downloading $pkg into $cache" >&2
    "$pip" download --no-deps --retries 0 --timeout 30 --progress-bar off -d "$cache" "$pkg" >&2 ||
      { echo "nvidia-wheels: pip could not download $pkg" >&2; exit 1; }
  fi
done
rm -rf "$cache/root.tmp" && mkdir -p "$cache/root.tmp"
for whl in "$cache"/nvidia_cublas-*.whl "$cache"/nvidia_nccl_cu13-*.whl; do
  python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("nvidia/")])' "$whl" "$cache/root.tmp" ||
    { echo "nvidia-wheels: cannot unpack $whl" >&2; exit 1; }
done
rm -rf "$cache/root" && mv "$cache/root.tmp" "$cache/root"
have || { echo "nvidia-wheels: the unpacked wheels lack cublasLt.h/libcublasLt.so or nccl.h/libnccl.so (layout changed?)" >&2; exit 1; }
echo "$root"
