#!/usr/bin/env bash
# Builds the native executable target/device-gateway-*-runner. Extra arguments go to Maven.
#   native-build/build.sh                 # or: make native
# Picks, in order:
#   1. GraalVM/Mandrel on this machine (native-image on PATH, or $GRAALVM_HOME/bin/native-image);
#   2. a working container runtime (docker or podman): Quarkus builds inside its Mandrel builder image;
#   3. otherwise stops at once with a message (never waits for anything).
set -euo pipefail
cd "$(dirname "$0")/.."

mvn_native=(./mvnw -B package -Dnative -DskipTests)

if command -v native-image >/dev/null 2>&1 || [ -x "${GRAALVM_HOME:-/nonexistent}/bin/native-image" ]; then
  echo "native-build: using the local GraalVM/Mandrel native-image" >&2
  exec "${mvn_native[@]}" "$@"
fi

for runtime in docker podman; do
  # `info` talks to the engine: it fails fast without one, and `timeout` bounds a hung socket.
  if command -v "$runtime" >/dev/null 2>&1 && timeout -k 2 10 "$runtime" info >/dev/null 2>&1; then
    echo "native-build: no native-image here; building in a container with $runtime" >&2
    exec "${mvn_native[@]}" -Dquarkus.native.container-build=true -Dquarkus.native.container-runtime="$runtime" "$@"
  fi
done

cat >&2 <<'MSG'
native-build: cannot build a native executable on this machine:
  - no GraalVM/Mandrel: `native-image` is not on PATH (nor in $GRAALVM_HOME/bin), and
  - no working container runtime: neither `docker info` nor `podman info` succeeded within 10 s.
Do one of:
  1. install GraalVM or Mandrel for Java 21 and put its bin/ on PATH (or set GRAALVM_HOME), then run
       ./mvnw -B package -Dnative -DskipTests
  2. start Docker or Podman, then run
       ./mvnw -B package -Dnative -Dquarkus.native.container-build=true -DskipTests
CI does 1 (native-build/github-workflow.yml). The JVM build needs neither: ./mvnw -B package -DskipTests
MSG
exit 1
