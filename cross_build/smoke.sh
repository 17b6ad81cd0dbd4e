#!/usr/bin/env bash
# Smoke-test the aarch64 bundle on an x86_64 host: in an arm64 Debian 12 root file system
# (mmdebstrap, cached) run under qemu-aarch64-static through binfmt_misc, install the bundle
# with its own install.sh (venv + pip --no-index from the bundle's wheels), then load the
# model with the cross-built llama.cpp and decode one command into the expected call.
#
#   bash cross_build/smoke.sh [OUT_DIR]          (OUT_DIR default: cross_build/out, as build.sh)
#
# Needs root (mmdebstrap --mode=root, chroot, mounts) and, from apt: mmdebstrap
# qemu-user-static binfmt-support. Only apt talks to the network, to build the root file
# system the first time (it uses the host's Debian sources file).
#
# Environment (all optional):
#   SMOKE_TEXT      the command to decode        (default: "turn on the seat heating")
#   SMOKE_FUNCTION  the expected function        (default: set_seat_heating_intensity)
#   SMOKE_ARGS      the expected arguments, JSON (default: {"level": "on"}, the symbolic value
#                   the daemon resolves to the field's "on" level; empty: not checked)
#   THREADS         llama.cpp threads            (default: 2)
#   APT_SOURCES     apt sources file for mmdebstrap (default: /etc/apt/sources.list.d/debian.sources)
#   SUITE           Debian suite                 (default: bookworm)
#   KEEP            1: keep the unpacked root file system (OUT_DIR/smoke) after a pass;
#                   after a failure it is always kept for inspection
set -euo pipefail

BUNDLE_NAME=vehicle-agent-aarch64
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

. "$here/cli.sh"
check_out_dir_args "$@"

out=${1:-$here/out}
[ -d "$out" ] || die "no output directory $out (run cross_build/build.sh first)"
out=$(cd "$out" && pwd)
cache=$out/cache
logs=$out/logs
mkdir -p "$cache" "$logs"
tarball=$out/$BUNDLE_NAME.tar.gz
suite=${SUITE:-bookworm}
rootfs_tar=$cache/rootfs-$suite-arm64.tar
# What a board has (see the bundle's README.txt): python3 with venv; libatomic1 for vosk.
rootfs_packages=python3,python3-venv,libatomic1
work=$out/smoke
rootfs=$work/rootfs
text=${SMOKE_TEXT:-turn on the seat heating}
want_function=${SMOKE_FUNCTION:-set_seat_heating_intensity}
want_args=${SMOKE_ARGS-'{"level": "on"}'}
threads=${THREADS:-2}
apt_sources=${APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}

timings=$out/timings-smoke.tsv
. "$(dirname "${BASH_SOURCE[0]}")/progress.sh"

mounted=()
cleanup() {
  local rc=$? i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    echo "smoke.sh: FAILED during step \"$step_name\" after $((SECONDS - t_start))s (logs: $logs)" >&2
  fi
}
trap cleanup EXIT

in_root() {  # run a command inside the arm64 root file system with a clean environment
  chroot "$rootfs" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# --------------------------------------------------------------------------------------------
step "preflight checks"
[ "$(id -u)" = 0 ] || die "run as root (chroot and mounts)"
for tool in mmdebstrap qemu-aarch64-static chroot mount umount tar file; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install mmdebstrap qemu-user-static binfmt-support file)"
done
[ -f "$tarball" ] || die "no bundle at $tarball (run cross_build/build.sh first)"
echo "    bundle $(basename "$tarball") ($(du -h "$tarball" | cut -f1)), $(qemu-aarch64-static --version | sed -n 1p)"
step_done

# --------------------------------------------------------------------------------------------
step "binfmt_misc: run aarch64 programs through qemu-aarch64-static"
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/status" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
    || die "binfmt_misc is not mounted and cannot be mounted here (a container without it?): aarch64 programs cannot run transparently"
  echo "    mounted binfmt_misc at $binfmt"
fi
if [ ! -e "$binfmt/qemu-aarch64" ]; then
  command -v update-binfmts >/dev/null || die "no qemu-aarch64 binfmt entry and no update-binfmts (apt-get install binfmt-support)"
  update-binfmts --enable qemu-aarch64 || die "update-binfmts --enable qemu-aarch64 failed"
  echo "    registered qemu-aarch64"
fi
grep -qx enabled "$binfmt/status" || die "binfmt_misc is disabled ($binfmt/status)"
grep -qx enabled "$binfmt/qemu-aarch64" || die "the qemu-aarch64 binfmt entry is disabled"
interp=$(sed -n 's/^interpreter //p' "$binfmt/qemu-aarch64")
flags=$(sed -n 's/^flags: //p' "$binfmt/qemu-aarch64")
step_done "interpreter $interp, flags $flags"

# --------------------------------------------------------------------------------------------
step "arm64 Debian $suite root file system (mmdebstrap)"
if [ -f "$rootfs_tar" ] && [ "$(cat "$rootfs_tar.packages" 2>/dev/null)" = "$rootfs_packages" ]; then
  step_done "cached: $rootfs_tar"
else
  rm -rf "$rootfs_tar" "$rootfs_tar.packages"
  echo "    packages: $rootfs_packages"
  [ -f "$apt_sources" ] || die "no apt sources file $apt_sources (set APT_SOURCES)"
  echo "    log: $logs/mmdebstrap.log"
  # The host's Debian sources file doubles as the chroot's sources list (mmdebstrap pastes it).
  rm -rf "$rootfs_tar.tmp"
  if ! nice -n 10 mmdebstrap --mode=root --format=tar --arch=arm64 --variant=minbase \
       --include="$rootfs_packages" "$suite" "$rootfs_tar.tmp" "$apt_sources" \
       > "$logs/mmdebstrap.log" 2>&1; then
    tail -20 "$logs/mmdebstrap.log" >&2
    rm -rf "$rootfs_tar.tmp"
    die "mmdebstrap failed"
  fi
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  printf '%s' "$rootfs_packages" > "$rootfs_tar.packages"
  step_done "$(du -h "$rootfs_tar" | cut -f1)"
fi

# --------------------------------------------------------------------------------------------
step "fresh root file system with the bundle copied in"
rm -rf "$work"
mkdir -p "$rootfs"
tar -xf "$rootfs_tar" -C "$rootfs" --numeric-owner
tar -xzf "$tarball" -C "$rootfs/root" --numeric-owner
case "$flags" in
  *F*) ;;  # the kernel holds the interpreter open: nothing to copy into the chroot
  *) install -D -m 0755 "$(command -v qemu-aarch64-static)" "$rootfs$interp"
     echo "    copied qemu-aarch64-static to $interp (binfmt entry without the F flag)" ;;
esac
mount -t proc proc "$rootfs/proc"
mounted+=("$rootfs/proc")
mount --bind /dev "$rootfs/dev"
mounted+=("$rootfs/dev")
machine=$(in_root uname -m)
[ "$machine" = aarch64 ] || die "uname -m in the root file system says $machine, not aarch64"
pyver=$(in_root python3 -c 'import platform; print(platform.python_version())')
echo "    $(file -bL "$rootfs/usr/bin/python3" | cut -d, -f1-2); python $pyver; uname -m: $machine"
step_done

# --------------------------------------------------------------------------------------------
step "check the bundle's checksums (arm64 sha256sum)"
in_root sh -c "cd /root/$BUNDLE_NAME && sha256sum --quiet -c SHA256SUMS" || die "bundle checksums do not match"
step_done

# --------------------------------------------------------------------------------------------
step "install the bundle: install.sh (python3 -m venv, pip install --no-index --find-links wheels)"
echo "    log: $logs/smoke-install.log"
if ! in_root bash "/root/$BUNDLE_NAME/install.sh" > "$logs/smoke-install.log" 2>&1; then
  tail -30 "$logs/smoke-install.log" >&2
  die "the bundle's install.sh failed"
fi
tail -1 "$logs/smoke-install.log" | sed 's/^/    /'
site=$rootfs/opt/vehicle-agent/venv/lib/python${pyver%.*}/site-packages
lib=$site/llama_cpp/lib/libllama.so
[ -f "$lib" ] || die "no $lib after the install"
desc=$(file -b "$lib")
case "$desc" in *"ARM aarch64"*) ;; *) die "installed libllama.so is not aarch64: $desc" ;; esac
echo "    installed libllama.so: ${desc%%, BuildID*}"
[ -f "$rootfs/var/lib/vehicle-agent/model.gguf" ] || die "install.sh put no model at /var/lib/vehicle-agent/model.gguf"
step_done "$(in_root /opt/vehicle-agent/venv/bin/pip list 2>/dev/null | tail -n +3 | wc -l) packages in the venv"

# --------------------------------------------------------------------------------------------
step "native dependencies load (grpcio, numpy, psutil, pyyaml, protobuf, pocketsphinx, vosk)"
cat > "$rootfs/root/smoke_native.py" <<'EOF'
import importlib
import sys

for name in ["grpc", "grpc_health.v1.health", "google.protobuf", "numpy", "psutil", "yaml", "gguf",
             "pocketsphinx", "vosk", "llama_cpp"]:
    importlib.import_module(name)
from agent.voice.recognizers import PocketSphinxRecognizer

# The daemon's default speech backend with the installed domain language model.
PocketSphinxRecognizer(language_model=sys.argv[1])
print("imported grpc, protobuf, numpy, psutil, yaml, gguf, pocketsphinx, vosk, llama_cpp; "
      "pocketsphinx loaded the speech language model")
EOF
in_root /opt/vehicle-agent/venv/bin/python /root/smoke_native.py /var/lib/vehicle-agent/model.speech.arpa \
  > "$logs/smoke-native.log" 2>&1 || { tail -20 "$logs/smoke-native.log" >&2; die "a native dependency does not load under arm64"; }
sed 's/^/    /' "$logs/smoke-native.log"
step_done

# --------------------------------------------------------------------------------------------
step "load the model and decode \"$text\" (cross-built llama.cpp under qemu)"
cat > "$rootfs/root/smoke_decode.py" <<'EOF'
import json
import platform
import sys
import time

model_path, text, want_function, want_args, threads = sys.argv[1:6]
t0 = time.perf_counter()
import llama_cpp
from agent.inference import CommandModel
from agent.registry import load_registry
t1 = time.perf_counter()
print(f"machine {platform.machine()}, Python {platform.python_version()}, llama_cpp {llama_cpp.__version__}, "
      f"library {llama_cpp.__file__.rsplit('/', 1)[0]}/lib")
print("llama.cpp:", llama_cpp.llama_print_system_info().decode().strip())
model = CommandModel(model_path, load_registry(), threads=int(threads))
t2 = time.perf_counter()
decoded = model.decode(text)
t3 = time.perf_counter()
print(f"import {t1 - t0:.1f}s, load {t2 - t1:.1f}s, decode {t3 - t2:.1f}s "
      f"(prefill {decoded.prefill_ms / 1000:.1f}s, {decoded.output_tokens} output tokens)")
print(f"decoded {text!r} -> {decoded.calls}")
call = decoded.calls[0] if decoded.calls else None
ok = call is not None and call.function == want_function and (not want_args or call.args == json.loads(want_args))
expected = f"{want_function}({want_args})" if want_args else want_function
print(("SMOKE PASS: " if ok else "SMOKE FAIL: expected ") + expected)
sys.exit(0 if ok else 1)
EOF
echo "    log: $logs/smoke-decode.log"
set +e
in_root /opt/vehicle-agent/venv/bin/python /root/smoke_decode.py \
  /var/lib/vehicle-agent/model.gguf "$text" "$want_function" "$want_args" "$threads" 2>&1 \
  | tee "$logs/smoke-decode.log" | grep -v '^llama_\|^load\|^print_info\|^$' | sed 's/^/    /'
rc=${PIPESTATUS[0]}
set -e
grep -q '^SMOKE PASS' "$logs/smoke-decode.log" && [ "$rc" = 0 ] || die "the decode check failed (exit $rc; see $logs/smoke-decode.log)"
step_done "$(sed -n 's/^decoded .* -> //p' "$logs/smoke-decode.log")"

for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}"; done
mounted=()
if [ "${KEEP:-0}" = 1 ]; then
  echo "kept the root file system at $rootfs"
else
  rm -rf "$work"
fi
echo "smoke test passed in $((SECONDS - t_start))s (step times: $timings)"
