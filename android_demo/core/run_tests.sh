#!/usr/bin/env bash
# Compile the plain-Kotlin core of the Android demo (no Android SDK needed) and run its JUnit
# tests on the JVM, against the golden vectors in src/test/resources.
#
#   run_tests.sh [BUNDLE_DIR ...]
#
# Each BUNDLE_DIR (a bundle written by lrf-export) is then checked by the Kotlin port the way the
# app checks it at load time (manifest, sha256, golden RNG/timesteps/noise, pixel conversion).
#
# Needs Debian's kotlinc 1.3 + JUnit 4 + a JDK:   apt-get install -y kotlin junit4
# Jars are looked up in /usr/share/java; override with KOTLIN_STDLIB, JUNIT_JAR, HAMCREST_JAR.
# kotlinc is slow to start, so main and test sources are compiled in one invocation.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAVA_DIR=/usr/share/java
KOTLIN_STDLIB="${KOTLIN_STDLIB:-$JAVA_DIR/kotlin-stdlib.jar}"
JUNIT_JAR="${JUNIT_JAR:-$JAVA_DIR/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-$JAVA_DIR/hamcrest-core.jar}"

die() { echo "run_tests.sh: error: $*" >&2; exit 2; }
command -v kotlinc >/dev/null || die "kotlinc not found; install it with: apt-get install -y kotlin junit4"
command -v java >/dev/null || die "java not found; install a JDK (e.g. apt-get install -y openjdk-17-jdk-headless)"
for jar in "$KOTLIN_STDLIB" "$JUNIT_JAR" "$HAMCREST_JAR"; do
  [ -f "$jar" ] || die "missing $jar; install with: apt-get install -y kotlin junit4 (or set the *_JAR variables)"
done

OUT="$(mktemp -d "${TMPDIR:-/tmp}/lrf-core-test.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

mapfile -t SOURCES < <(find "$HERE/src/main/kotlin" "$HERE/src/test/kotlin" -name '*.kt' | sort)
# Test classes: every *Test.kt under src/test/kotlin, named by its package and file name.
mapfile -t CLASSES < <(cd "$HERE/src/test/kotlin" && find . -name '*Test.kt' | sort \
  | sed -e 's|^\./||' -e 's|\.kt$||' -e 's|/|.|g')
[ "${#CLASSES[@]}" -gt 0 ] || die "no *Test.kt files under $HERE/src/test/kotlin"

echo "compiling ${#SOURCES[@]} Kotlin files ($(kotlinc -version 2>&1 | grep -o 'kotlinc-jvm [^ ]*'))"
# JDK 13+ prints a harmless warning about -Xverify:none from the kotlinc launcher; drop it.
set +e
kotlinc -nowarn -cp "$JUNIT_JAR:$HAMCREST_JAR" -d "$OUT/classes" "${SOURCES[@]}" 2>"$OUT/kotlinc.log"
rc=$?
set -e
grep -v -e 'Options -Xverify:none and -noverify were deprecated' "$OUT/kotlinc.log" >&2 || true
[ "$rc" -eq 0 ] || die "kotlinc failed (exit $rc), see the messages above"

CP="$OUT/classes:$HERE/src/test/resources:$KOTLIN_STDLIB:$JUNIT_JAR:$HAMCREST_JAR"
echo "running ${#CLASSES[@]} test classes"
java -cp "$CP" org.junit.runner.JUnitCore "${CLASSES[@]}"

for bundle in "$@"; do
  echo "checking bundle $bundle with the Kotlin core"
  java -cp "$CP" com.lrfmobile.core.BundleCheckKt "$bundle"
done
