#!/usr/bin/env bash
# Cross-build the vehicle agent's aarch64 bundle (Raspberry Pi 5: Cortex-A76) on an x86_64
# Debian 12 host, and pack it into one directory + tarball an integrator copies to the board.
#
#   bash cross_build/build.sh [OUT_DIR]          (OUT_DIR default: cross_build/out)
#
# Produces OUT_DIR/vehicle-agent-aarch64/ and OUT_DIR/vehicle-agent-aarch64.tar.gz; keeps
# caches (sdist, build tree, cross-built wheel, downloaded wheels) in OUT_DIR/cache and
# logs in OUT_DIR/logs. Only pip talks to the network (the configured package index).
#
# Environment (all optional):
#   MODEL_DIR  the built model's directory  (default: ${VEHICLE_AGENT_HOME:-~/.cache/vehicle-agent}/models/default)
#   MODEL_NAME its base name                (default: default -> default.gguf, default.speech.arpa)
#   PYTHON     host Python 3.11 running pip (default: the repository's .venv/bin/python, else python3)
#   JOBS       parallel compile jobs        (default: 2)
#   ARM_ARCH   -march of ggml's CPU code    (default: armv8.2-a+dotprod+fp16)
#   WITH_MTMD  1: also build libmtmd (multimodal; the agent does not use it; default 0)
#   REBUILD    1: recompile llama.cpp even when the cached aarch64 wheel matches
#
# Host packages (apt): gcc-aarch64-linux-gnu g++-aarch64-linux-gnu cmake file.
set -euo pipefail

LLAMA_VERSION=0.3.36
TARGET_PY=3.11                # Debian 12 / Raspberry Pi OS bookworm
TARGET_ABI=cp311
# Debian 12 has glibc 2.36: every manylinux tag up to 2.36 runs there.
TARGET_PLATFORMS=(manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_28_aarch64
                  manylinux_2_36_aarch64 linux_aarch64)
BUNDLE_NAME=vehicle-agent-aarch64

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

. "$here/cli.sh"
check_out_dir_args "$@"

out=${1:-$here/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=$out/cache
logs=$out/logs
stage=$out/$BUNDLE_NAME
mkdir -p "$cache" "$logs"

model_dir=${MODEL_DIR:-${VEHICLE_AGENT_HOME:-$HOME/.cache/vehicle-agent}/models/default}
model_name=${MODEL_NAME:-default}
jobs=${JOBS:-2}
arm_arch=${ARM_ARCH:-armv8.2-a+dotprod+fp16}
with_mtmd=${WITH_MTMD:-0}
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x "$repo/.venv/bin/python" ]; then py=$repo/.venv/bin/python
else py=python3
fi

# ---- progress: one line per step with the time since the start, and the step's duration ----
timings=$out/timings-build.tsv
. "$(dirname "${BASH_SOURCE[0]}")/progress.sh"
trap 'rc=$?; [ $rc -eq 0 ] || echo "build.sh: FAILED during step \"$step_name\" after $((SECONDS - t_start))s (logs: $logs)" >&2' EXIT

# --------------------------------------------------------------------------------------------
step "preflight checks"
for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ aarch64-linux-gnu-objdump aarch64-linux-gnu-readelf cmake file tar sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu cmake file)"
done
command -v "$py" >/dev/null || die "no Python at $py (set PYTHON=/path/to/python3.11)"
host_py=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$py" -m pip --version >/dev/null 2>&1 || die "$py has no pip"
[ -f "$here/aarch64-linux-gnu.cmake" ] || die "missing toolchain file $here/aarch64-linux-gnu.cmake"
model=$model_dir/$model_name.gguf
speech=$model_dir/$model_name.speech.arpa
for f in "$model" "$model.sha256.json" "$speech" "$speech.sha256.json"; do
  [ -f "$f" ] || die "missing $f (build the model first: make run, or vehicle-agent-toolchain build); set MODEL_DIR/MODEL_NAME"
done
[ -f "$repo/setup.cfg" ] && [ -d "$repo/agent" ] || die "$repo does not look like the vehicle-agent repository"
echo "    host python $host_py ($py), target cp${TARGET_PY/./} aarch64, -march=$arm_arch, jobs=$jobs"
step_done

# --------------------------------------------------------------------------------------------
step "llama-cpp-python $LLAMA_VERSION source distribution"
sdist_dir=$cache/sdist
sdist=$sdist_dir/llama_cpp_python-$LLAMA_VERSION.tar.gz
if [ -f "$sdist" ]; then
  step_done "cached"
else
  mkdir -p "$sdist_dir"
  "$py" -m pip download --no-binary :all: --no-deps --dest "$sdist_dir" \
      "llama-cpp-python==$LLAMA_VERSION" > "$logs/sdist.log" 2>&1 \
    || { tail -20 "$logs/sdist.log" >&2; die "pip download of the llama-cpp-python sdist failed"; }
  [ -f "$sdist" ] || die "pip saved no $sdist (see $logs/sdist.log)"
  step_done "$(du -h "$sdist" | cut -f1)"
fi

# --------------------------------------------------------------------------------------------
step "host build tools (venv with scikit-build-core, setuptools, wheel)"
benv=$cache/buildenv
if [ -x "$benv/bin/python" ] && "$benv/bin/python" -c 'import scikit_build_core, setuptools, wheel' 2>/dev/null; then
  step_done "cached"
else
  rm -rf "$benv"
  "$py" -m venv "$benv"
  "$benv/bin/python" -m pip install "scikit-build-core[pyproject]>=0.9.2" "setuptools>=68" wheel packaging \
      > "$logs/buildenv.log" 2>&1 || { tail -20 "$logs/buildenv.log" >&2; die "could not install the build tools"; }
  step_done
fi
"$benv/bin/wheel" tags --help >/dev/null 2>&1 || die "the wheel package in $benv has no 'wheel tags' command"

# --------------------------------------------------------------------------------------------
step "cross-compile llama.cpp into an aarch64 llama-cpp-python wheel"
local_wheels=$cache/local-wheels
mkdir -p "$local_wheels"
llama_wheel=$local_wheels/llama_cpp_python-$LLAMA_VERSION-py3-none-linux_aarch64.whl
cmake_args=(
  "-DCMAKE_TOOLCHAIN_FILE=$here/aarch64-linux-gnu.cmake"  # Linux/aarch64, aarch64-linux-gnu-gcc/g++
  -DCMAKE_BUILD_TYPE=Release
  -DGGML_NATIVE=OFF                      # never probe the build machine
  "-DGGML_CPU_ARM_ARCH=$arm_arch"        # Cortex-A76: ARMv8.2-A + dot product + FP16 arithmetic
  -DGGML_OPENMP=OFF                      # ggml's own thread pool: no libgomp needed on the board
  -DGGML_CCACHE=OFF
  -DGGML_BACKEND_DL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
)
if [ "$with_mtmd" = 1 ]; then cmake_args+=(-DLLAVA_BUILD=ON); else cmake_args+=(-DLLAVA_BUILD=OFF); fi
stamp_text="llama-cpp-python $LLAMA_VERSION; $(aarch64-linux-gnu-gcc --version | sed -n 1p); ${cmake_args[*]}"
stamp=$llama_wheel.args
if [ "${REBUILD:-0}" != 1 ] && [ -f "$llama_wheel" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ]; then
  step_done "cached: $(basename "$llama_wheel")"
else
  rm -f "$llama_wheel" "$stamp"
  src=$cache/llama-src
  rm -rf "$src" && mkdir -p "$src"
  tar -xzf "$sdist" -C "$src" --strip-components=1
  grep -q 'GGML_CPU_ARM_ARCH' "$src/vendor/llama.cpp/ggml/CMakeLists.txt" \
    || die "this llama.cpp has no GGML_CPU_ARM_ARCH option; the cmake arguments need updating"
  raw=$cache/llama-raw-wheel
  rm -rf "$raw" && mkdir -p "$raw"
  echo "    cmake: ${cmake_args[*]}"
  echo "    log: $logs/llama-build.log (the compile takes several minutes on 2 cores)"
  # scikit-build-core reads CMAKE_ARGS; build-dir keeps the CMake tree for faster rebuilds.
  if ! CMAKE_ARGS="${cmake_args[*]}" CMAKE_BUILD_PARALLEL_LEVEL=$jobs \
      nice -n 10 "$benv/bin/python" -m pip wheel -v --no-deps --no-build-isolation --wheel-dir "$raw" \
        --config-settings=build-dir="$cache/llama-build" \
        --config-settings=cmake.build-type=Release \
        "$src" > "$logs/llama-build.log" 2>&1; then
    tail -30 "$logs/llama-build.log" >&2
    die "the llama-cpp-python cross build failed (full log: $logs/llama-build.log)"
  fi
  built=$(ls "$raw"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | sed -n 1p)
  [ -n "$built" ] || die "pip wheel produced no llama_cpp_python wheel in $raw"
  echo "    built $(basename "$built"); retagging for linux_aarch64"
  # The wheel holds no Python extension module, only ctypes-loaded shared libraries, so only
  # the platform tag (taken from the x86_64 host) is wrong.
  case "$built" in
    *-linux_aarch64.whl) cp "$built" "$llama_wheel" ;;
    *) "$benv/bin/wheel" tags --platform-tag linux_aarch64 --remove "$built" > "$logs/retag.log" 2>&1 \
         || { cat "$logs/retag.log" >&2; die "wheel tags failed"; }
       mv "$raw/llama_cpp_python-$LLAMA_VERSION-py3-none-linux_aarch64.whl" "$llama_wheel" ;;
  esac
  printf '%s' "$stamp_text" > "$stamp"
  step_done "$(du -h "$llama_wheel" | cut -f1)"
fi

# --------------------------------------------------------------------------------------------
step "verify the cross-built libraries"
check=$cache/llama-check
rm -rf "$check" && mkdir -p "$check"
"$benv/bin/python" -m zipfile -e "$llama_wheel" "$check"
grep -qx 'Tag: py3-none-linux_aarch64' "$check"/llama_cpp_python-*.dist-info/WHEEL \
  || die "the llama wheel's WHEEL file does not say Tag: py3-none-linux_aarch64"
[ -z "$(find "$check" -name '*cpython-*x86_64*')" ] || die "the llama wheel contains an x86_64 Python extension module"
nlibs=0
while IFS= read -r lib; do
  desc=$(file -b "$lib")
  case "$desc" in
    *"ELF 64-bit LSB shared object, ARM aarch64"*) ;;
    *) die "$(basename "$lib") is not an aarch64 shared object: $desc" ;;
  esac
  needed=$(aarch64-linux-gnu-readelf -d "$lib" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
  echo "    $(basename "$lib"): ${desc%%, BuildID*}; needs: $needed"
  case "$needed" in *libgomp*) die "$(basename "$lib") needs libgomp (OpenMP should be off)" ;; esac
  nlibs=$((nlibs + 1))
done < <(find "$check/llama_cpp/lib" -name '*.so' -type f | sort)
for want in libllama.so libggml.so libggml-base.so libggml-cpu.so; do
  [ -f "$check/llama_cpp/lib/$want" ] || die "the llama wheel lacks llama_cpp/lib/$want"
done
# The CPU backend must use the A76's dot-product and FP16 instructions (-march took effect).
nsdot=$(aarch64-linux-gnu-objdump -d "$check/llama_cpp/lib/libggml-cpu.so" | grep -c $'\tsdot' || true)
[ "$nsdot" -gt 0 ] || die "libggml-cpu.so has no sdot instruction: -march=$arm_arch did not take effect"
step_done "$nlibs aarch64 libraries, $nsdot sdot instructions in libggml-cpu.so"

# --------------------------------------------------------------------------------------------
step "vehicle-agent wheel"
# Build from a copy so the repository gets no build/ directory or rewritten egg-info.
psrc=$cache/project-src
rm -rf "$psrc" && mkdir -p "$psrc"
(cd "$repo" && tar -cf - --exclude='__pycache__' --exclude='*.pyc' \
   pyproject.toml setup.cfg README.md agent $(ls -d LICENSE* MANIFEST.in 2>/dev/null || true)) | tar -xf - -C "$psrc"
rm -f "$local_wheels"/vehicle_agent-*.whl
"$benv/bin/python" -m pip wheel --no-deps --no-build-isolation --wheel-dir "$local_wheels" "$psrc" \
    > "$logs/project-wheel.log" 2>&1 || { tail -20 "$logs/project-wheel.log" >&2; die "building the vehicle-agent wheel failed"; }
project_wheel=$(ls "$local_wheels"/vehicle_agent-*.whl | sed -n 1p)
case "$project_wheel" in *-py3-none-any.whl) ;; *) die "unexpected project wheel $(basename "$project_wheel") (expected pure Python)" ;; esac
# Runtime dependencies, read from the wheel's metadata (extras excluded).
deps_list=$("$benv/bin/python" - "$project_wheel" <<'EOF'
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
for req in msg.get_all("Requires-Dist") or []:
    if "extra ==" not in req:
        print(req.strip())
EOF
) || die "could not read the vehicle-agent wheel's metadata"
mapfile -t deps <<< "$deps_list"
[ -n "$deps_list" ] || die "the vehicle-agent wheel declares no runtime dependencies"
printf '    runtime dependency: %s\n' "${deps[@]}"
step_done "$(basename "$project_wheel")"

# --------------------------------------------------------------------------------------------
step "download aarch64 wheels of every runtime dependency"
dl=$cache/deps-aarch64
mkdir -p "$dl"
platform_args=()
for p in "${TARGET_PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
target_args=(--only-binary=:all: "${platform_args[@]}" --python-version "$TARGET_PY"
             --implementation cp --abi "$TARGET_ABI")
# llama-cpp-python comes from the cross-built wheel; pip resolves its dependencies too.
reqs=()
for d in "${deps[@]}"; do
  case "$d" in llama-cpp-python*|llama_cpp_python*) ;; *) reqs+=("$d") ;; esac
done
# A dependency published only as a source distribution (vosk's srt, say) has no aarch64
# wheel to download; when it is pure Python its wheel, built here, runs anywhere.
pure=$cache/pure-wheels
mkdir -p "$pure"
built_pure=()
for attempt in 1 2 3 4 5 6 7 8; do
  if "$py" -m pip download "${target_args[@]}" --find-links "$pure" --dest "$dl" "${reqs[@]}" "$llama_wheel" \
       > "$logs/deps-download.log" 2>&1; then
    break
  fi
  missing=$(sed -n 's/^ERROR: No matching distribution found for \(.*\)$/\1/p' "$logs/deps-download.log" | sed -n 1p)
  missing=${missing%% (from *}
  if [ -z "$missing" ] || [ "$attempt" = 8 ]; then
    tail -20 "$logs/deps-download.log" >&2
    die "pip download failed (see $logs/deps-download.log)"
  fi
  echo "    $missing: no cp311 aarch64 wheel on the index; building a wheel from its source distribution"
  tmpw=$cache/pure-build
  rm -rf "$tmpw" && mkdir -p "$tmpw"
  { "$py" -m pip download --no-deps --no-binary :all: --dest "$tmpw/sdist" "$missing" \
    && "$py" -m pip wheel --no-deps --wheel-dir "$tmpw" "$tmpw"/sdist/*; } > "$logs/pure-wheel.log" 2>&1 \
    || { tail -20 "$logs/pure-wheel.log" >&2; die "could not build a wheel of $missing from source"; }
  for w in "$tmpw"/*.whl; do
    case "$w" in
      *-none-any.whl) mv "$w" "$pure/"; built_pure+=("$(basename "$w")") ;;
      *) die "$missing has no aarch64 wheel and is not pure Python ($(basename "$w")): it would need cross-compiling" ;;
    esac
  done
done
step_done "$(ls "$dl" | wc -l) files in the download cache${built_pure[*]:+; built pure-Python wheels: ${built_pure[*]}}"

# --------------------------------------------------------------------------------------------
step "resolve the install set offline (as pip on the board will)"
pick=$cache/pick
rm -rf "$pick" && mkdir -p "$pick"
cp "$dl"/*.whl "$pick"/
cp "$llama_wheel" "$project_wheel" "$pick"/
cp "$pure"/*.whl "$pick"/ 2>/dev/null || true
report=$logs/install-report.json
# --isolated: ignore the host's pip configuration (its extra find-links hold x86_64 wheels).
if ! "$py" -m pip --isolated install --dry-run --ignore-installed --no-index --find-links "$pick" \
     "${target_args[@]}" --target "$cache/dry-run-target" --report "$report" vehicle-agent \
     > "$logs/resolve.log" 2>&1; then
  tail -20 "$logs/resolve.log" >&2
  die "the downloaded wheels do not install vehicle-agent for cp311 aarch64"
fi
chosen_list=$("$benv/bin/python" - "$report" "$pick" <<'EOF'
import json, sys, os
from urllib.parse import urlparse, unquote
from packaging.utils import parse_wheel_filename
report, pick = sys.argv[1], sys.argv[2]
for item in json.load(open(report))["install"]:
    path = unquote(urlparse(item["download_info"]["url"]).path)
    name = os.path.basename(path)
    if os.path.dirname(os.path.abspath(path)) != os.path.abspath(pick) or not name.endswith(".whl"):
        sys.exit(f"resolved {name} from outside the picked wheels")
    _, _, _, tags = parse_wheel_filename(name)
    plats = {t.platform for t in tags}
    if not all(p == "any" or p.endswith("_aarch64") for p in plats):
        sys.exit(f"{name} is not for aarch64")
    print(name)
EOF
) || die "the resolved install set is not all aarch64/pure-Python wheels"
mapfile -t chosen <<< "$chosen_list"
printf '    %s\n' "${chosen[@]}"
step_done "${#chosen[@]} wheels"

# --------------------------------------------------------------------------------------------
step "assemble the bundle"
rm -rf "$stage"
mkdir -p "$stage/wheels" "$stage/model" "$stage/systemd"
for w in "${chosen[@]}"; do cp "$pick/$w" "$stage/wheels/"; done
for f in "$model" "$model.sha256.json" "$speech" "$speech.sha256.json"; do cp "$f" "$stage/model/"; done
"$benv/bin/python" - "$stage/model/$model_name.gguf" "$stage/model/$model_name.speech.arpa" <<'EOF' || die "a model file does not match its manifest"
import hashlib, json, sys
for path in sys.argv[1:]:
    want = json.load(open(path + ".sha256.json"))["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != want:
        sys.exit(f"{path}: sha256 {h.hexdigest()} != manifest {want}")
EOF
cp -a "$repo/systemd/." "$stage/systemd/"
chmod 0755 "$stage/systemd/install.sh"

cat > "$stage/install.sh" <<EOF
#!/usr/bin/env bash
# Install the vehicle agent from this bundle on the board, as root:
#   ./install.sh [--with-sim]
# (PREFIX and DESTDIR are passed through to systemd/install.sh.)
set -euo pipefail
here=\$(cd "\$(dirname "\$0")" && pwd)
arch=\$(uname -m)
[ "\$arch" = aarch64 ] || { echo "install.sh: this bundle is for aarch64 (arm64); this machine is \$arch" >&2; exit 2; }
command -v python3 >/dev/null || { echo "install.sh: python3 is missing (apt-get install python3 python3-venv)" >&2; exit 2; }
pyver=\$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "\$pyver" = "$TARGET_PY" ] || { echo "install.sh: the wheels are for Python $TARGET_PY; python3 here is \$pyver" >&2; exit 2; }
python3 -c 'import ensurepip, venv' 2>/dev/null || { echo "install.sh: python3-venv is missing (apt-get install python3-venv)" >&2; exit 2; }
# vosk's libvosk.so links libatomic.so.1; the default pocketsphinx backend does not need it.
if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep 'libatomic\.so\.1 ' >/dev/null; then
  echo "install.sh: warning: libatomic.so.1 is missing: the vosk speech backend will not load (apt-get install libatomic1)" >&2
fi
exec bash "\$here/systemd/install.sh" "\$here/wheels" "\$here/model/$model_name.gguf" "\$@"
EOF
chmod 0755 "$stage/install.sh"

llama_libs=$(cd "$check/llama_cpp/lib" && ls *.so | tr '\n' ' ')
cat > "$stage/README.txt" <<EOF
vehicle-agent bundle for aarch64 (Raspberry Pi 5 / Cortex-A76)
===============================================================

Built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m) by cross_build/build.sh.

Board requirements: 64-bit Debian 12 or Raspberry Pi OS (bookworm, arm64, glibc 2.36)
with python3 ($TARGET_PY) and python3-venv; libatomic1 too if the vosk speech backend is
used (its libvosk.so links libatomic.so.1). No network is needed: every wheel is here.

    apt-get install python3 python3-venv libatomic1

Install (as root, from this directory):

    ./install.sh              # the agent daemon (vehicle-agent.service)
    ./install.sh --with-sim   # plus the vehicle simulator (vehicle-sim.service)

It creates /opt/vehicle-agent/venv (pip install --no-index from wheels/), writes
/etc/vehicle-agent/config.yaml if absent, puts the model at
/var/lib/vehicle-agent/model.gguf (with its SHA-256 manifest and the speech
language model) and enables the units when systemd runs. PREFIX and DESTDIR
are honoured (see systemd/install.sh).

Check it:

    systemctl status vehicle-agent
    /opt/vehicle-agent/venv/bin/vehicle-agent ask --listen unix:///run/vehicle-agent/agent.sock "turn on the air conditioning"
    /opt/vehicle-agent/venv/bin/vehicle-agent model info --model /var/lib/vehicle-agent/model.gguf

Contents:

    install.sh     the entry point above (checks arch and Python, then runs systemd/install.sh)
    wheels/        vehicle-agent and every runtime dependency, for cp311 / aarch64
    model/         $model_name.gguf + $model_name.gguf.sha256.json,
                   $model_name.speech.arpa + $model_name.speech.arpa.sha256.json
    systemd/       the units, config.yaml and the installer
    SHA256SUMS     checksums of every file (sha256sum -c SHA256SUMS)

llama-cpp-python $LLAMA_VERSION was cross-compiled with $(aarch64-linux-gnu-gcc --version | sed -n 1p):
-march=$arm_arch, GGML_NATIVE=OFF, GGML_OPENMP=OFF; libraries: $llama_libs
EOF

(cd "$stage" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort | xargs sha256sum > SHA256SUMS)
step_done "$(du -sh "$stage" | cut -f1)"

# --------------------------------------------------------------------------------------------
step "tarball"
tarball=$out/$BUNDLE_NAME.tar.gz
tar -C "$out" --owner=0 --group=0 --numeric-owner -czf "$tarball.tmp" "$BUNDLE_NAME"
mv "$tarball.tmp" "$tarball"
step_done "$(du -h "$tarball" | cut -f1)"

echo "bundle: $stage"
echo "tarball: $tarball"
echo "total: $((SECONDS - t_start))s (step times: $timings)"
