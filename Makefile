# device-gateway: the two commands are `make run` (gateway + local servers + simulated devices) and `make test`.
MVN ?= ./mvnw -B
KAFKA_LIBS := .cache/kafka-libs
CP_FILE := target/test-classpath.txt
TOOL_CP = target/test-classes:target/classes:$$(cat $(CP_FILE))

.PHONY: deps build test tools run bench faults native clean

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
run: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" io.devicegateway.testing.LocalRun

# The benchmark: standard scenarios against local servers; prints JSON lines and a table.
bench: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" $(BENCH_OPTS) io.devicegateway.bench.Bench

# Native executable: needs GraalVM/Mandrel (or a container runtime with -Dquarkus.native.container-build=true).
native:
	native-build/build.sh

clean:
	$(MVN) -q clean

# Fault scenarios (Kafka/gateway/broker/Redis failures, bad-input flood, long Kafka outage): a few minutes.
faults: tools
	java -Djava.util.logging.manager=org.jboss.logmanager.LogManager -cp "$(TOOL_CP)" $(FAULTS_OPTS) io.devicegateway.bench.FaultScenarios
