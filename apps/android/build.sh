#!/usr/bin/env bash
# Builds the Kotlin SDK with kotlinc (no Gradle here), the JNI library for the host, and runs the JUnit 5 tests.
#
#   bash apps/android/build.sh sdk     # -> apps/android/build/spartan-edge-sdk.jar
#   bash apps/android/build.sh jni     # -> apps/android/build/jni/libspartan_edge_jni.so (needs apps/native built)
#   bash apps/android/build.sh test    # sdk + jni (if the native runtime is built) + tests; JUnit XML in build/test-results
#
# Tests read SPARTAN_EDGE_TEST_FIXTURES (a JSON file written by tests/test_android_sdk.py: server URL, expected
# predictions, ...); without it only the tests that need no server run. Steps are skipped when their inputs did not
# change (a stamp of the sources' sha256), since kotlinc costs ~20 s a compile on two cores.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/apps/android"
OUT="$HERE/build"
KOTLIN_HOME="${KOTLIN_HOME:-$ROOT/tools/node_modules/kotlin-compiler}"
KOTLINC="$KOTLIN_HOME/bin/kotlinc"
JSON_JAR=/usr/share/java/com.android.json.jar                      # Debian libandroid-json-java: Android's org.json
JUNIT_JAR=/usr/share/java/junit-platform-console-standalone.jar    # Debian junit5
NATIVE_LIB="${SPARTAN_EDGE_NATIVE_LIB:-$ROOT/apps/native/build/libspartan_edge.so}"
mkdir -p "$OUT"

need() { [ -e "$1" ] || { echo "build.sh: missing $1 ($2); run scripts/system_deps.sh" >&2; exit 2; }; }
stamp_ok() {  # stamp_ok NAME FILES... : true when the files' hashes equal the stamp from the last good build
  local name=$1; shift
  local now; now=$(cat "$@" | sha256sum | cut -d' ' -f1)
  [ -f "$OUT/$name.stamp" ] && [ "$(cat "$OUT/$name.stamp")" = "$now" ] && return 0
  echo "$now" > "$OUT/$name.stamp.new"; return 1
}
stamp_save() { mv "$OUT/$1.stamp.new" "$OUT/$1.stamp"; }

build_sdk() {
  need "$KOTLINC" "the npm package kotlin-compiler"; need "$JSON_JAR" "Debian libandroid-json-java"
  mapfile -t srcs < <(find "$HERE/sdk/src/main/kotlin" -name '*.kt' | sort)
  if stamp_ok sdk "${srcs[@]}" && [ -f "$OUT/spartan-edge-sdk.jar" ]; then return; fi
  echo "build.sh: kotlinc sdk (${#srcs[@]} files)"
  "$KOTLINC" -jvm-target 17 -Werror -cp "$JSON_JAR" -d "$OUT/spartan-edge-sdk.jar" "${srcs[@]}"
  stamp_save sdk
}

build_jni() {
  if [ ! -f "$NATIVE_LIB" ]; then
    echo "build.sh: no native runtime at $NATIVE_LIB (bash apps/native/build.sh builds it); JNI skipped" >&2
    return 1
  fi
  cmake -S "$HERE/jni" -B "$OUT/jni" -DCMAKE_BUILD_TYPE=Release -DSPARTAN_EDGE_NATIVE_LIB="$NATIVE_LIB" \
    -DSPARTAN_EDGE_INCLUDE="$ROOT/apps/native/include" > "$OUT/jni-cmake.log"
  cmake --build "$OUT/jni" -j2 > "$OUT/jni-build.log" || { cat "$OUT/jni-build.log" >&2; exit 1; }
}

build_tests() {
  need "$JUNIT_JAR" "Debian junit5"
  mapfile -t srcs < <(find "$HERE/sdk/src/test/kotlin" -name '*.kt' | sort)
  if stamp_ok tests "${srcs[@]}" "$OUT/spartan-edge-sdk.jar" && [ -f "$OUT/spartan-edge-tests.jar" ]; then return; fi
  echo "build.sh: kotlinc tests (${#srcs[@]} files)"
  # -Xfriend-paths: the tests may read the SDK's `internal` helpers, as Gradle's test source set can.
  "$KOTLINC" -jvm-target 17 -cp "$OUT/spartan-edge-sdk.jar:$JSON_JAR:$JUNIT_JAR:$KOTLIN_HOME/lib/kotlin-test.jar" \
    -Xfriend-paths="$OUT/spartan-edge-sdk.jar" -d "$OUT/spartan-edge-tests.jar" "${srcs[@]}"
  stamp_save tests
}

run_tests() {
  local jni_prop=()
  if [ -f "$OUT/jni/libspartan_edge_jni.so" ]; then jni_prop=("-Dspartanedge.jni=$OUT/jni/libspartan_edge_jni.so"); fi
  rm -rf "$OUT/test-results"
  java "${jni_prop[@]}" "-Dspartanedge.repo=$ROOT" -jar "$JUNIT_JAR" \
    --class-path "$OUT/spartan-edge-tests.jar:$OUT/spartan-edge-sdk.jar:$JSON_JAR:$KOTLIN_HOME/lib/kotlin-stdlib.jar:$KOTLIN_HOME/lib/kotlin-test.jar" \
    --scan-class-path "$OUT/spartan-edge-tests.jar" --fail-if-no-tests --reports-dir "$OUT/test-results" --details summary --disable-banner "$@"
}

case "${1:-test}" in
  sdk) build_sdk ;;
  jni) build_sdk; build_jni ;;
  test) shift || true; build_sdk; build_jni || true; build_tests; run_tests "$@" ;;
  *) echo "usage: build.sh sdk|jni|test [junit console options]" >&2; exit 2 ;;
esac
