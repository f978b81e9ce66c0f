# device-gateway: the two commands are `make run` (gateway + local servers + simulated devices) and `make test`.
MVN ?= ./mvnw -B
KAFKA_LIBS := .cache/kafka-libs
CP_FILE := target/test-classpath.txt
TOOL_CP = target/test-classes:target/classes:$$(cat $(CP_FILE))
# JDK 25 for the AOT cache (Project Leyden); the default build and `make test` stay on the default java (17)
JAVA25_HOME ?= /usr/lib/jvm/temurin-25-jdk-amd64
# The pods' JVM options (one source: kubernetes/base/configmap.yaml), for the AOT training run
POD_JVM_OPTIONS := $(shell sed -n 's/^  JDK_JAVA_OPTIONS: "\(.*\)"$$/\1/p' kubernetes/base/configmap.yaml)

.PHONY: deps build test tools run run-dynsec registry-bench bench rss faults native clean package-aot startup startup-native

# Kafka broker jars for the local servers (tests, run, bench); mosquitto and redis-server come from apt.
deps: $(KAFKA_LIBS)/.done
$(KAFKA_LIBS)/.done: local/kafka/pom.xml
	$(MVN) -q -f local/kafka/pom.xml dependency:copy-dependencies
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || echo "warning: mosquitto missing: apt-get install -y mosquitto redis-server"
	touch $@

build:
	$(MVN) -q package -DskipTests

# The test command (CI runs this): unit tests and black-box tests against real Kafka, Mosquitto and Redis.
test: deps
	$(MVN) verify

$(CP_FILE): pom.xml
	$(MVN) -q dependency:build-classpath -Dmdep.outputFile=$(CP_FILE) -Dmdep.includeScope=test

tools: deps build $(CP_FILE)
	$(MVN) -q test-compile

# Runs the gateway locally with everything it needs and shows messages flowing. Ctrl-C stops all of it.
# RUN_OPTS=-Drun.dynsec=true: the local Mosquitto with dynamic security (devices provisioned through DeviceRegistry,
# each with its own credentials and topics); `make run-dynsec` is the same.
run: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" $(RUN_OPTS) io.devicegateway.testing.LocalRun

run-dynsec:
	$(MAKE) run RUN_OPTS="-Drun.dynsec=true $(RUN_OPTS)"

# The benchmark: standard scenarios against local servers (Mosquitto with its default settings), the gateway run as
# the pods run it (JDK 25, the ConfigMap's JVM options, the Deployment's memory limit); prints JSON lines and a table:
# throughput vs the raw broker, latency, CPU per process, Kafka produce requests, RSS; idle, and paced at 100, 1,000,
# 10,000 msg/s. BENCH_OPTS="-Dbench.scenarios=idle,rate-10000-qos1,rate-1000-qos1,rate-100-qos1" (see Bench.java).
bench: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" $(BENCH_OPTS) io.devicegateway.bench.Bench

# Memory as the pods run it (the ConfigMap's JDK_JAVA_OPTIONS, the Deployment's memory limit as the JVM's RAM, JDK 25):
# RSS and CPU idle for 30 s after ready, then the largest RSS under full-rate QoS 1 load and at 10,000 msg/s, then what
# holds it (heap, metaspace, code cache, threads, classes; NMT categories too with BENCH_OPTS=-Dbench.nmt=true).
rss: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" \
		-Dbench.scenarios=idle,gateway-qos1,rate-10000-qos1 $(BENCH_OPTS) io.devicegateway.bench.Bench

# Registry benchmark: RegisterDevice rate (PBKDF2 + Redis + iot.registry + dynsec createClient) and the auth hook's
# latency under load (cold and cached /mqtt/auth, /mqtt/acl). REGISTRY_BENCH_OPTS="-Dregistry.bench.devices=500".
registry-bench: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" $(REGISTRY_BENCH_OPTS) io.devicegateway.bench.RegistryBench

# JDK 25 AOT cache: target/quarkus-app/ in the aot-jar layout plus app.aot, trained by IngestIT and CommandIT
# (pom profile `aot`) with the pods' JVM options. Run it with the same JDK and options:
# java -XX:AOTCache=app.aot -jar quarkus-run.jar (see native-build/STARTUP.md).
package-aot: deps
	JAVA_HOME=$(JAVA25_HOME) $(MVN) verify -Daot -Daot.jvm.options="$(POD_JVM_OPTIONS)"

# Startup benchmark: process start to the first message in Kafka (and to ready, RSS, CPU, phases), median of 5, the
# gateway run as the pods run it (JDK 25, the ConfigMap's JVM options, the memory limit as its RAM): plain JVM (the
# default fast-jar, built in target/fastjar/) vs the AOT cache (aot-jar + app.aot in target/quarkus-app/). Builds what
# is missing: the AOT package when app.aot is absent or older than the jar, the fast-jar when it is older than app.aot.
# STARTUP_OPTS="-Dstartup.runs=10" for more runs, "-Dstartup.ref-jar=<other build's quarkus-run.jar>" for a before/after.
startup: deps $(CP_FILE)
	@test target/quarkus-app/app.aot -nt target/quarkus-app/quarkus-run.jar || $(MAKE) package-aot
	@test target/fastjar/quarkus-run.jar -nt target/quarkus-app/app.aot || \
		$(MVN) -q package -DskipTests -Dquarkus.package.output-directory=$(CURDIR)/target/fastjar
	$(MVN) -q test-compile
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" \
		-Dstartup.java=$(JAVA25_HOME)/bin/java -Dstartup.fastjar=target/fastjar/quarkus-run.jar $(STARTUP_OPTS) \
		io.devicegateway.bench.StartupBench

# Startup of the native executable (CI, where it can be built: ./mvnw verify -Dnative): the same measurements as
# `make startup`, process start to first message in Kafka, 5 runs.
startup-native: deps $(CP_FILE)
	@ls target/*-runner >/dev/null 2>&1 || { echo "no native executable in target/: ./mvnw -B package -Dnative (native-build/build.sh)"; exit 1; }
	$(MVN) -q test-compile
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" \
		-Dstartup.variants=native -Dstartup.native=$$(ls target/*-runner | head -1) $(STARTUP_OPTS) \
		io.devicegateway.bench.StartupBench

# Native executable: needs GraalVM/Mandrel (or a container runtime with -Dquarkus.native.container-build=true).
native:
	native-build/build.sh

clean:
	$(MVN) -q clean

# Fault scenarios (Kafka/gateway/broker/Redis failures, gateway killed and replaced under a new name or not replaced,
# bad-input flood, Kafka down 20 s and 3 min) against stock Mosquitto: about 10 minutes, kafka-down-3min alone over 4.
# FAULTS_OPTS="-Dfaults.only=gateway-replaced-new-name,gateway-killed-not-replaced"; -Dfaults.max-queued=N raises
# Mosquitto's max_queued_messages for every scenario (diagnostic: tells the broker's drops from the gateway's).
faults: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" $(FAULTS_OPTS) io.devicegateway.bench.FaultScenarios
