#!/usr/bin/env bash
# System packages the device-side builds and the server tests need (Debian 12 + npm), installed once, idempotently.
# Called by `scripts/setup.sh --dev`; safe to rerun. Each group is named for the part of the repo that needs it.
set -euo pipefail
cd "$(dirname "$0")/.."

debian=(
  # apps/native: the C++ runtime (CMake + g++ against the ExecuTorch wheel), downloads, JSON, Unicode for the tokenizer
  cmake g++ pkg-config libcurl4-openssl-dev libssl-dev nlohmann-json3-dev libutf8proc-dev libicu-dev
  # apps/android: JUnit 5 for the JVM tests of the Kotlin SDK (JDK 17 with jni.h is on the machine), and Android's
  # own org.json (the JSON API every Android device has) so the SDK parses JSON the same way on the JVM
  junit5 libandroid-json-java
  # demo_server scale-out: PostgreSQL registry, nginx file offload, a real browser for the console test
  postgresql nginx chromium chromium-driver
  # benchmarks/server_load.py --driver wrk: a C load generator (the Python clients eat the shared cores)
  wrk
)
missing=()
for p in "${debian[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "system_deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Kotlin compiler distribution from npm (no Gradle or Android SDK can be installed here), kept inside the repo.
KOTLIN_VERSION=2.4.20
if [ ! -x tools/node_modules/kotlin-compiler/bin/kotlinc ]; then
  echo "system_deps: installing kotlin-compiler@$KOTLIN_VERSION (npm)"
  mkdir -p tools
  npm install --silent --prefix tools --no-save --no-audit --no-fund "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
fi
