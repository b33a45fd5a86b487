#!/usr/bin/env bash
# Installs what run_tests.sh needs on a Debian/Ubuntu machine (run as root, as CI does):
# kotlinc 1.3 (Debian's `kotlin`), JUnit 4 + Hamcrest, and a JDK if none is present.
# Skips apt entirely when everything is already there, so repeated CI runs stay fast.
set -euo pipefail

need=()
command -v kotlinc >/dev/null || need+=(kotlin)
[ -f /usr/share/java/junit4.jar ] && [ -f /usr/share/java/hamcrest-core.jar ] || need+=(junit4)
command -v java >/dev/null || need+=(default-jdk-headless)

if [ "${#need[@]}" -eq 0 ]; then
  echo "ci_install.sh: kotlinc, junit4 and java already installed"
  exit 0
fi
echo "ci_install.sh: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
kotlinc -version 2>&1 | grep -o 'kotlinc-jvm [^ ]*'
