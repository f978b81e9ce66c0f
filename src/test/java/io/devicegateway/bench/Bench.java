package io.devicegateway.bench;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.UUID;

import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.LocalServers;

/**
 * The ingest benchmark: starts local Kafka, Mosquitto and Redis, the packaged gateway, and runs the standard
 * scenarios. Each scenario is measured twice against the same broker in the same run: through the gateway into
 * Kafka, and raw (broker to one plain MQTT 5 subscriber acknowledging on receipt, {@link RawSubscriber}), so the
 * result is a fraction of this machine's own limit. Mosquitto runs with its default settings. Prints one JSON line
 * per scenario (with per-device out-of-order counts and, for gateway scenarios, gateway CPU per message) and a
 * table. Every wait is bounded; it always stops by itself.
 *
 * <p>The gateway runs as the pods run it ({@code bench.pod-jvm}, default true): JDK 25, the ConfigMap's
 * JDK_JAVA_OPTIONS and MALLOC_ARENA_MAX, the Deployment's memory limit as the JVM's RAM ({@code PodJvm}). Scenarios:
 * {@code idle} (30 s after ready: CPU and RSS with no traffic), the unpaced throughput pairs (raw vs gateway, QoS 1
 * and 0), and the paced {@code rate-10000-qos1}, {@code rate-1000-qos1}, {@code rate-100-qos1} (each after a warm-up at
 * its own rate): the cost of the path at a steady rate, gateway and Kafka CPU in % of a core and the broker's produce
 * requests per second. Every gateway row also reports the gateway's largest RSS.
 *
 * <p>Options (system properties): {@code bench.scale} (multiplies message counts, default 1),
 * {@code bench.warmup.jit-us} and {@code bench.warmup.max-rounds} (see {@link #warmUp}),
 * {@code bench.inflight} (Mosquitto max_inflight_messages, which only 3.1.1 subscribers get; default 0 = the
 * broker's default, 20), {@code bench.scenarios} (comma-separated names, default all), {@code bench.raw.protocol}
 * (the raw subscriber's MQTT version, 5 or 3.1.1; default 5), {@code bench.raw.receive-maximum} (the raw MQTT 5
 * subscriber's Receive Maximum; default 65534, the gateway's window), {@code bench.raw.write-off-ms} (default 300: how
 * long the closed-loop window waits, full, for messages the broker dropped on the raw subscriber before it stops
 * counting them), {@code bench.gateway.config} ({@code key=value;key=value}
 * gateway settings, e.g. a producer override), {@code bench.gateway.jar} (another build's
 * {@code quarkus-run.jar}, to compare versions in the same conditions), {@code bench.e2e-window} (for the unpaced
 * scenarios: the most messages all devices keep published but not yet delivered; default 1000; 0 = an open-loop
 * flood), {@code bench.rate.seconds} (measured length of each paced scenario, default 20, times bench.scale),
 * {@code bench.rate.warmup-seconds} (default 10), {@code bench.idle-seconds} (default 30), {@code bench.pod-jvm}
 * (false: -Xmx512m on this JVM instead), {@code bench.java} (the gateway's java binary), {@code bench.gateway.jvm}
 * (extra JVM options), {@code bench.nmt} (native memory tracking, its categories printed at the end). A stock
 * Mosquitto never pushes back on QoS 1
 * publishers: it acknowledges them and drops what does not fit a subscriber's queue. Measured on Debian's 2.0.11
 * (10 publishers, one subscriber, 200,000 messages): open loop, about 1 % arrives; with a window of N, about N are
 * still dropped, whatever the subscriber's protocol or Receive Maximum. Each row reports what the broker dropped.
 */
public final class Bench {

    record Scenario(String name, boolean raw, int devices, long perDevice, int size, int qos, int rate,
            boolean report, boolean numbered) {
        Scenario(String name, boolean raw, int devices, long perDevice, int size, int qos, int rate, boolean report) {
            this(name, raw, devices, perDevice, size, qos, rate, report, false);
        }
    }

    record Result(Scenario scenario, long sent, long delivered, long duplicates, long outOfOrder, double seconds,
            Stats latency, long publishFailures, Map<String, Long> cpuMillis, double gatewayP99Millis,
            long brokerDropped, long window, long produceRequests, long rssMaxMiB, Map<String, Long> gatewayThreadCpu,
            long brokerLost) {

        long missing() {
            return sent - delivered;
        }

        /** Gateway CPU time (user + system) per delivered message in microseconds; NaN for raw scenarios. */
        double gatewayCpuMicrosPerMessage() {
            Long gateway = cpuMillis.get("gateway");
            return gateway == null || delivered == 0 ? Double.NaN : gateway * 1000.0 / delivered;
        }

        double throughput() {
            return seconds > 0 ? delivered / seconds : 0;
        }

        /**
         * The part of {@link #gatewayCpuMicrosPerMessage()} spent by the JIT compiler threads: the one-off cost of a
         * young JVM, which a long-running pod no longer pays; NaN for raw scenarios.
         */
        double gatewayJitMicrosPerMessage() {
            if (gatewayThreadCpu.isEmpty() || delivered == 0) {
                return Double.NaN;
            }
            long jit = gatewayThreadCpu.entrySet().stream().filter(e -> e.getKey().contains("Compiler"))
                    .mapToLong(Map.Entry::getValue).sum();
            return jit * 1000.0 / delivered;
        }

        /** CPU of one process in % of one core over the scenario; NaN if not measured. */
        double cpuPercent(String process) {
            Long ms = cpuMillis.get(process);
            return ms == null || seconds <= 0 ? Double.NaN : ms / (seconds * 10);
        }

        /** Kafka produce requests per second over the scenario (all clients); NaN if not read. */
        double produceRequestsPerSecond() {
            return produceRequests < 0 || seconds <= 0 ? Double.NaN : produceRequests / seconds;
        }
    }

    private static final Duration IDLE_TIMEOUT = Duration.ofSeconds(15);
    /** The broker's produce-request counter (JMX), shared by the scenarios of one run; null if JMX is unreachable. */
    private static KafkaStats kafkaStats;

    /** 10 devices at {@code rate} msg/s in total for bench.rate.seconds (default 20) x scale seconds. */
    static Scenario rated(String name, int rate, double scale) {
        long seconds = Math.max(1, Math.round(Long.getLong("bench.rate.seconds", 20) * scale));
        return new Scenario(name, false, 10, Math.max(1, rate / 10 * seconds), 100, 1, rate, true);
    }
    private static final Duration MAX_SCENARIO = Duration.ofMinutes(3);

    /**
     * Unpaced QoS 1 warm-up in rounds of 10 devices x 5,000 x scale messages until the JIT compilers are done: until a
     * round's compiler CPU is under bench.warmup.jit-us (default 1) microseconds per message, at most
     * bench.warmup.max-rounds (default 12) rounds. Measured on JDK 25 with the pods' options (one C2 thread): after a
     * fixed 50,000 messages the C2 compiler still took about half of the gateway's CPU over the next 200,000, and it
     * reached the hot path itself (MqttLink.onMessage, KafkaProducer.doSend) only ~10 s after start: until then it
     * runs as profiled C1 code. The scenarios then measure the steady state; their "jit" column shows what remains.
     */
    static void warmUp(LocalServers servers, GatewayProcess gateway, double scale, boolean numbered)
            throws InterruptedException {
        double jitBound = Double.parseDouble(System.getProperty("bench.warmup.jit-us", "1"));
        int maxRounds = Integer.getInteger("bench.warmup.max-rounds", 12);
        long perDevice = Math.max(1, (long) (5_000 * scale));
        for (int round = 1; round <= maxRounds; round++) {
            Result r = run(servers, gateway, new Scenario("warmup", false, 10, perDevice, 100, 1, 0, false, numbered));
            double jit = r.gatewayJitMicrosPerMessage();
            System.err.printf(Locale.ROOT, "bench: warm-up round %d: %.0f msg/s, gateway %.1f us/msg of which JIT %.1f%n",
                    round, r.throughput(), r.gatewayCpuMicrosPerMessage(), jit);
            if (!(jit >= jitBound)) {
                return;
            }
        }
        System.err.printf("bench: warm-up: the JIT was still compiling after %d rounds%n", maxRounds);
    }

    public static void main(String[] args) throws Exception {
        double scale = Double.parseDouble(System.getProperty("bench.scale", "1"));
        int inflight = Integer.parseInt(System.getProperty("bench.inflight", "0"));
        Set<String> only = new HashSet<>(List.of(System.getProperty("bench.scenarios", "").split(",")));
        only.remove("");

        long tput1 = (long) (20_000 * scale);
        long tput0 = (long) (30_000 * scale);
        List<Scenario> scenarios = List.of(
                new Scenario("source-10k-qos1", false, 10, 1_000, 100, 1, 0, true),
                new Scenario("raw-qos1", true, 10, tput1, 100, 1, 0, true),
                new Scenario("gateway-qos1", false, 10, tput1, 100, 1, 0, true),
                new Scenario("raw-qos0", true, 10, tput0, 100, 0, 0, true),
                new Scenario("gateway-qos0", false, 10, tput0, 100, 0, 0, true),
                // paced: the cost of the path at a steady rate (CPU per process, Kafka produce requests, latency),
                // each after a warm-up at the same rate so the JIT has compiled the paths this rate takes
                // (highest first: code that a low rate reaches slowly is compiled by then, as in a pod that has run a while)
                rated("rate-10000-qos1", 10_000, scale),
                rated("rate-1000-qos1", 1_000, scale),
                rated("rate-100-qos1", 100, scale));

        System.err.printf("bench: starting local Kafka, Mosquitto (%s), Redis%n",
                inflight > 0 ? "max_inflight_messages " + inflight : "default settings");
        // bench.gateway.tls=true: the gateway connects over TLS to a second listener of the same broker (devices and the
        // raw subscriber stay on the plain one). Mosquitto reads one packet per socket per loop pass on a plain
        // connection but everything decrypted in hand on a TLS one, so the gateway's PUBACKs are applied in batches.
        boolean gatewayTls = Boolean.getBoolean("bench.gateway.tls");
        int tlsPort = gatewayTls ? LocalServers.freePort() : -1;
        io.devicegateway.testing.TestCertificates certs = gatewayTls ? new io.devicegateway.testing.TestCertificates(
                Path.of("target", "bench-tls", UUID.randomUUID().toString().substring(0, 8)).toAbsolutePath())
                .ca("ca").signed("ca", "server", "localhost",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
                .readableByOthers() : null;
        // notice-level log: Mosquitto names the client whose queue overflows (logging only, not behaviour)
        try (LocalServers servers = LocalServers.startWith("bench", inflight,
                m -> {
                    m.extraConfig.add("log_type notice");
                    // bench.max-queued=N: Mosquitto's max_queued_messages (diagnostic; default: the broker's 1000)
                    m.maxQueuedMessages = Integer.getInteger("bench.max-queued", 0);
                    if (certs != null) {
                        m.extraConfig.addAll(List.of("listener " + tlsPort + " 127.0.0.1",
                                "certfile " + certs.file("server.crt"), "keyfile " + certs.file("server.key")));
                    }
                }, k -> k.jmxPort = LocalServers.freePort())) {
            try {
                kafkaStats = new KafkaStats(servers.kafka.jmxPort);
            } catch (java.io.IOException e) {
                System.err.println("bench: Kafka JMX not readable (" + e + "): no produce-request counts");
            }
            Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
            // no fixed client id: each bench gateway leases one from Redis, as pods do, so that its session is drained
            // and discarded when it stops; a fixed id's session stayed subscribed after its process and cost the broker
            // CPU queueing and dropping copies during the later scenarios (the dedup pair: 307,455 and 486,748 drops)
            config.put("gateway.grpc.auth.tokens", io.devicegateway.testing.Agents.tokensConfig());
            if (certs != null) {
                config.put("gateway.mqtt.port", Integer.toString(tlsPort));
                config.put("gateway.mqtt.tls-configuration-name", "bench");
                config.put("quarkus.tls.bench.trust-store.pem.certs", certs.file("ca.crt").toString());
            }
            // bench.gateway.config=key=value;key=value: gateway settings to compare (e.g. producer linger)
            for (String kv : System.getProperty("bench.gateway.config", "").split(";")) {
                int eq = kv.indexOf('=');
                if (eq > 0) {
                    config.put(kv.substring(0, eq).trim(), kv.substring(eq + 1).trim());
                }
            }
            // the main gateway runs the standard scenarios; the dedup pair starts its own
            boolean main = only.isEmpty() || only.stream().anyMatch(n -> !n.startsWith("numbered-"));
            if (main) {
                Path log = servers.workDir.resolve("gateway.log");
                System.err.println("bench: starting the gateway, log in " + log);
                // bench.gateway.jar: another build's quarkus-run.jar, to compare two versions on the same scenarios
                Path jar = Path.of(System.getProperty("bench.gateway.jar", GatewayProcess.DEFAULT_JAR.toString()));
                System.err.println("bench: gateway JVM: " + gatewayJava() + " " + String.join(" ", gatewayJvmOptions()));
                try (GatewayProcess gateway = GatewayProcess.start(gatewayJava(), jar, config, gatewayJvmOptions(), log,
                        gatewayEnvironment()).awaitReady(Duration.ofSeconds(60))) {
                    if (only.isEmpty() || only.contains("idle")) {
                        idle(servers, gateway);
                    }
                    if (scenarios.stream().anyMatch(sc -> only.isEmpty() || only.contains(sc.name()))) {
                        warmUp(servers, gateway, scale, false);
                    }
                    List<Result> results = new ArrayList<>();
                    for (Scenario s : scenarios) {
                        if (!only.isEmpty() && !only.contains(s.name())) {
                            continue;
                        }
                        if (s.rate() > 0 && s.report()) {
                            long warm = Math.max(1, s.rate() / s.devices() * Long.getLong("bench.rate.warmup-seconds", 10));
                            System.err.printf("bench: %s: warm-up at the same rate ...%n", s.name());
                            run(servers, gateway, new Scenario(s.name() + "-warmup", false, s.devices(), warm, s.size(),
                                    s.qos(), s.rate(), false));
                        }
                        System.err.printf("bench: %s ...%n", s.name());
                        Result r = run(servers, gateway, s);
                        if (s.report()) {
                            results.add(r);
                            System.out.println(json(r, results));
                        }
                    }
                    printTable(results);
                    memoryBreakdown(gateway);
                    runSendEvent(servers, gateway, scale, only);
                }
            }
            runDedup(servers, config, scale, only);
        }
    }


    /**
     * Devices that number their messages (MQTT 5, user properties seq/seq-epoch), through a gateway with duplicate
     * removal off and then one with it on: each a fresh gateway process with the same warm-up, in the same run, so
     * the throughput and CPU per message compare directly (the cost of the Redis claim and commit per message).
     */
    private static void runDedup(LocalServers servers, Map<String, String> baseConfig, double scale, Set<String> only)
            throws InterruptedException {
        boolean off = only.isEmpty() || only.contains("numbered-qos1-dedup-off");
        boolean on = only.isEmpty() || only.contains("numbered-qos1-dedup-on");
        if (!off && !on) {
            return;
        }
        List<Result> results = new ArrayList<>();
        for (boolean dedup : new boolean[] { false, true }) {
            if (dedup ? !on : !off) {
                continue;
            }
            String name = "numbered-qos1-dedup-" + (dedup ? "on" : "off");
            Map<String, String> config = new LinkedHashMap<>(baseConfig);
            config.put("gateway.dedup.enabled", Boolean.toString(dedup));
            Path log = servers.workDir.resolve("gateway-" + name + ".log");
            System.err.println("bench: " + name + ": starting a gateway with gateway.dedup.enabled=" + dedup + ", log in "
                    + log);
            try (GatewayProcess gateway = GatewayProcess.start(gatewayJava(), GatewayProcess.DEFAULT_JAR, config,
                    gatewayJvmOptions(), log, gatewayEnvironment()).awaitReady(Duration.ofSeconds(60))) {
                warmUp(servers, gateway, scale, true);
                System.err.printf("bench: %s ...%n", name);
                Result r = run(servers, gateway, new Scenario(name, false, 10, (long) (20_000 * scale), 100, 1, 0, true,
                        true));
                results.add(r);
                System.out.println(json(r, results));
            }
        }
        printTable(results);
        if (results.size() == 2) {
            Result offResult = results.get(0);
            Result onResult = results.get(1);
            System.out.printf(Locale.ROOT, "dedup on vs off (numbered devices, same run): throughput %.0f vs %.0f msg/s "
                    + "(%.0f%%), gateway CPU %.1f vs %.1f us/msg, Redis CPU %.1f us/msg%n", onResult.throughput(),
                    offResult.throughput(), 100 * onResult.throughput() / offResult.throughput(),
                    onResult.gatewayCpuMicrosPerMessage(), offResult.gatewayCpuMicrosPerMessage(),
                    onResult.cpuMillis().getOrDefault("redis", 0L) * 1000.0 / Math.max(1, onResult.delivered()));
        }
    }

    /**
     * The JVM the pods run (bench.pod-jvm=true, the default): the manifests' JDK_JAVA_OPTIONS with their memory limit
     * as the JVM's physical memory, on JDK 25 (bench.java overrides); bench.pod-jvm=false: -Xmx512m on this JVM, as
     * before. bench.gateway.jvm adds options either way.
     */
    private static List<String> gatewayJvmOptions() {
        boolean pod = Boolean.parseBoolean(System.getProperty("bench.pod-jvm", "true"));
        List<String> options = new ArrayList<>(pod ? io.devicegateway.testing.PodJvm.emulatedOptions() : List.of("-Xmx512m"));
        if (Boolean.getBoolean("bench.nmt")) {
            options.add("-XX:NativeMemoryTracking=summary"); // read by memoryBreakdown (costs a few MiB itself)
        }
        String extra = System.getProperty("bench.gateway.jvm", "").trim();
        if (!extra.isEmpty()) {
            options.addAll(List.of(extra.split("\\s+")));
        }
        return options;
    }

    private static String gatewayJava() {
        boolean pod = Boolean.parseBoolean(System.getProperty("bench.pod-jvm", "true"));
        return pod ? io.devicegateway.testing.PodJvm.java("bench.java")
                : System.getProperty("bench.java", ProcessHandle.current().info().command().orElse("java"));
    }

    private static Map<String, String> gatewayEnvironment() {
        boolean pod = Boolean.parseBoolean(System.getProperty("bench.pod-jvm", "true"));
        return pod ? io.devicegateway.testing.PodJvm.environment() : Map.of();
    }

    /**
     * The gateway left alone for bench.idle-seconds (default 30) right after it is ready: what it costs with no
     * traffic (CPU of its timers and clients) and its resident memory then.
     */
    private static void idle(LocalServers servers, GatewayProcess gateway) {
        long seconds = Long.getLong("bench.idle-seconds", 30);
        System.err.printf("bench: idle for %d s ...%n", seconds);
        LocalServers.pause(2_000); // what starts right after readiness (deferred consumer, admin client) settles
        Map<String, Long> before = cpu(servers, gateway.pid());
        long requestsBefore = kafkaStats == null ? -1 : kafkaStats.produceRequests();
        LocalServers.pause(seconds * 1000);
        Map<String, Long> after = cpu(servers, gateway.pid());
        long requests = kafkaStats == null ? -1 : kafkaStats.produceRequests() - requestsBefore;
        long rss = LocalServers.rssMiB(gateway.pid());
        double gatewayCpu = (after.get("gateway") - before.get("gateway")) / (seconds * 10.0);
        double kafkaCpu = (after.get("kafka") - before.get("kafka")) / (seconds * 10.0);
        System.out.printf(Locale.ROOT, "{\"scenario\":\"idle\",\"seconds\":%d,\"gateway_rss_mib\":%d,"
                + "\"gateway_cpu_percent\":%.2f,\"kafka_cpu_percent\":%.2f,\"produce_requests\":%d}%n", seconds, rss,
                gatewayCpu, kafkaCpu, requests);
        System.out.printf(Locale.ROOT, "%nidle %d s after ready: gateway RSS %d MiB, gateway CPU %.2f %% of a core, "
                + "Kafka CPU %.2f %%, %d produce requests%n", seconds, rss, gatewayCpu, kafkaCpu, requests);
        if (Boolean.getBoolean("bench.nmt")) {
            System.out.println("native memory when idle (NMT, committed KiB by category; NMT itself adds ~3 MiB):");
            nativeMemory(gateway.pid()).forEach((k, v) -> System.out.printf("  %8d %s%n", v, k));
        }
    }

    /** What holds the gateway's memory after the scenarios, from its own JVM meters: evidence for the footprint. */
    private static void memoryBreakdown(GatewayProcess gateway) {
        String metrics = gateway.metrics();
        StringBuilder line = new StringBuilder();
        for (String raw : metrics.split("\n")) {
            if ((raw.startsWith("jvm_memory_used_bytes{") || raw.startsWith("jvm_memory_committed_bytes{"))
                    && !raw.contains("} 0.0")) {
                String id = raw.replaceAll(".*id=\"([^\"]*)\".*", "$1");
                String what = raw.startsWith("jvm_memory_used") ? "used" : "committed";
                double mib = Double.parseDouble(raw.substring(raw.lastIndexOf(' ') + 1)) / (1024 * 1024);
                line.append(String.format(Locale.ROOT, "%s %s %.1f MiB; ", id, what, mib));
            }
        }
        System.out.printf(Locale.ROOT, "%ngateway memory after the scenarios: RSS %d MiB; %sthreads %.0f, classes %.0f%n",
                LocalServers.rssMiB(gateway.pid()), line, gateway.metric("jvm_threads_live_threads"),
                gateway.metric("jvm_classes_loaded_classes"));
        if (Boolean.getBoolean("bench.nmt")) {
            System.out.println("native memory (NMT, committed KiB by category):");
            nativeMemory(gateway.pid()).forEach((k, v) -> System.out.printf("  %8d %s%n", v, k));
        }
    }

    /** The JVM's own account of its memory (jcmd VM.native_memory summary), committed KiB per category, largest first. */
    static Map<String, Long> nativeMemory(long pid) {
        Map<String, Long> categories = new LinkedHashMap<>();
        try {
            Path jcmd = Path.of(gatewayJava()).resolveSibling("jcmd");
            Process p = new ProcessBuilder(jcmd.toString(), Long.toString(pid), "VM.native_memory", "summary")
                    .redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            p.waitFor(30, java.util.concurrent.TimeUnit.SECONDS);
            java.util.regex.Matcher m = java.util.regex.Pattern
                    .compile("(?m)^(Total|-\\s+([A-Za-z ]+?))\\s*\\(?:?\\s*reserved=\\d+KB, committed=(\\d+)KB")
                    .matcher(out);
            while (m.find()) {
                categories.put(m.group(2) == null ? "Total" : m.group(2).trim(), Long.parseLong(m.group(3)));
            }
        } catch (Exception e) {
            categories.put("unreadable: " + e, 0L);
        }
        Map<String, Long> sorted = new LinkedHashMap<>();
        categories.entrySet().stream().sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
                .forEach(e -> sorted.put(e.getKey(), e.getValue()));
        return sorted;
    }

    private static void runSendEvent(LocalServers servers, GatewayProcess gateway, double scale, Set<String> only) {
        boolean rated = only.isEmpty() || only.contains("sendevent-1000rps");
        boolean max = only.isEmpty() || only.contains("sendevent-max");
        if (!rated && !max) {
            return;
        }
        System.err.println("bench: SendEvent: connecting 10 devices ...");
        var devices = SendEventBench.onlineDevices(servers, gateway, "se-" + UUID.randomUUID().toString().substring(0, 6), 10);
        try {
            SendEventBench.run("sendevent-warmup", servers, gateway, devices, 0, 32, (long) (30_000 * scale));
            List<SendEventBench.Result> results = new ArrayList<>();
            if (rated) {
                System.err.println("bench: sendevent-1000rps ...");
                results.add(SendEventBench.run("sendevent-1000rps", servers, gateway, devices, 1_000, 500,
                        (long) (10_000 * scale)));
            }
            if (max) {
                System.err.println("bench: sendevent-max ...");
                results.add(SendEventBench.run("sendevent-max", servers, gateway, devices, 0, 64,
                        (long) (20_000 * scale)));
            }
            System.out.println();
            for (SendEventBench.Result r : results) {
                System.out.println(r.json());
            }
            System.out.printf("%n%-22s %8s %9s %7s %9s %8s %8s %8s%n", "scenario", "calls", "delivered", "errors",
                    "req/s", "p50 ms", "p95 ms", "p99 ms");
            for (SendEventBench.Result r : results) {
                System.out.printf(Locale.ROOT, "%-22s %8d %9d %7d %9.0f %8.2f %8.2f %8.2f%n", r.name(), r.calls(),
                        r.ok(), r.errors(), r.ok() / r.seconds(), r.latency().percentileMillis(50),
                        r.latency().percentileMillis(95), r.latency().percentileMillis(99));
            }
        } finally {
            devices.forEach(io.devicegateway.testing.DeviceAgent::close);
        }
    }

    static Map<String, Long> cpu(LocalServers servers, long gatewayPid) {
        Map<String, Long> cpu = new LinkedHashMap<>();
        cpu.put("gateway", LocalServers.cpuMillis(gatewayPid));
        cpu.put("kafka", LocalServers.cpuMillis(servers.kafka.pid()));
        cpu.put("mosquitto", LocalServers.cpuMillis(servers.mosquitto.pid()));
        cpu.put("redis", LocalServers.cpuMillis(servers.redis.pid()));
        cpu.put("simulator_and_verifier", LocalServers.cpuMillis(ProcessHandle.current().pid()));
        return cpu;
    }

    /**
     * p99 of the gateway's own receipt-to-Kafka-ack timer over one scenario, from the difference of its histogram
     * buckets before and after (upper bucket bound, so it never flatters).
     */
    static double p99Millis(java.util.TreeMap<Double, Double> before, java.util.TreeMap<Double, Double> after) {
        double total = after.lastEntry().getValue() - before.getOrDefault(after.lastKey(), 0.0);
        if (total <= 0) {
            return Double.NaN;
        }
        for (Map.Entry<Double, Double> bucket : after.entrySet()) {
            double count = bucket.getValue() - before.getOrDefault(bucket.getKey(), 0.0);
            if (count >= 0.99 * total) {
                return bucket.getKey() * 1000;
            }
        }
        return Double.NaN;
    }

    static Result run(LocalServers servers, GatewayProcess gateway, Scenario s) throws InterruptedException {
        long gatewayPid = gateway.pid();
        var bucketsBefore = gateway.buckets("gateway_ingest_latency_seconds");
        String runId = s.name() + "-" + UUID.randomUUID().toString().substring(0, 6);
        Set<String> devices = new HashSet<>();
        for (int d = 0; d < s.devices(); d++) {
            devices.add(runId + "-d" + d);
        }
        AutoCloseable sink;
        Tally tally;
        String topicPattern;
        if (s.raw()) {
            RawSubscriber raw = new RawSubscriber("127.0.0.1", servers.mosquitto.port, "bench/+/telemetry", runId);
            sink = raw;
            tally = raw.tally;
            topicPattern = "bench/%s/telemetry";
        } else {
            KafkaVerifier verifier = new KafkaVerifier(servers.kafka.bootstrapServers(), "iot.telemetry", devices);
            sink = verifier;
            tally = verifier.tally;
            topicPattern = "devices/%s/telemetry";
        }
        long sent = s.devices() * s.perDevice();
        long window = s.rate() > 0 ? 0 : Long.getLong("bench.e2e-window", 1000);
        long droppedBefore = BrokerStats.droppedSoFar(servers.mosquitto.port);
        // what the gateway found the broker dropped for good (skipped ids its resend did not include)
        double lostBefore = s.raw() ? 0 : gateway.metric("gateway_mqtt_broker_lost_total");
        long requestsBefore = kafkaStats == null || s.raw() ? -1 : kafkaStats.produceRequests();
        java.util.concurrent.atomic.AtomicLong rssMax = new java.util.concurrent.atomic.AtomicLong();
        java.util.concurrent.atomic.AtomicBoolean sampling = new java.util.concurrent.atomic.AtomicBoolean(!s.raw());
        Thread rssSampler = new Thread(() -> {
            while (sampling.get()) {
                rssMax.accumulateAndGet(LocalServers.rssMiB(gatewayPid), Math::max);
                LocalServers.pause(200);
            }
        }, "bench-rss");
        rssSampler.setDaemon(true);
        rssSampler.start();
        Map<String, Long> cpuBefore = cpu(servers, gatewayPid);
        // CPU is read every 100 ms so that the scenario's share ends with its last delivery: a run with messages
        // missing waits up to IDLE_TIMEOUT more, and that idle time must not count per message
        java.util.concurrent.ConcurrentLinkedDeque<Map.Entry<Long, Map<String, Long>>> cpuSamples =
                new java.util.concurrent.ConcurrentLinkedDeque<>();
        java.util.concurrent.atomic.AtomicBoolean cpuSampling = new java.util.concurrent.atomic.AtomicBoolean(true);
        Thread cpuSampler = new Thread(() -> {
            while (cpuSampling.get()) {
                cpuSamples.add(Map.entry(System.nanoTime(), cpu(servers, gatewayPid)));
                LocalServers.pause(100);
            }
        }, "bench-cpu");
        cpuSampler.setDaemon(true);
        cpuSampler.start();
        Map<String, Long> threadsBefore = s.raw() ? Map.of() : LocalServers.cpuMillisByThreadGroup(gatewayPid);
        long failures;
        long start;
        try (DeviceSimulator sim = new DeviceSimulator("127.0.0.1", servers.mosquitto.port, runId, s.devices(),
                topicPattern, s.numbered())) {
            sim.endToEndWindow(tally::delivered, window);
            if (s.raw()) {
                // the plain subscriber cannot get back what Mosquitto drops from its queue (the gateway can)
                sim.writeOffLostAfter(Duration.ofMillis(Long.getLong("bench.raw.write-off-ms", 300)));
            }
            start = System.nanoTime();
            sim.run(s.perDevice(), s.size(), s.qos(), s.rate());
            failures = sim.failures();
            awaitDelivery(tally, sent, start);
            if (tally.delivered() < sent) {
                for (String d : sim.deviceIds()) {
                    java.util.BitSet lost = tally.missingSet(d, sim.acknowledged(d));
                    if (!lost.isEmpty()) {
                        System.err.printf("bench: %s: %d missing on %s, first %s, last %d%n", s.name(),
                                lost.cardinality(), d, lost.stream().limit(5).boxed().toList(), lost.length() - 1);
                    }
                }
            }
        }
        try {
            sink.close();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
        double seconds = (tally.lastNanos() - start) / 1e9;
        cpuSampling.set(false);
        Map<String, Long> cpuUsed = cpu(servers, gatewayPid);
        for (Map.Entry<Long, Map<String, Long>> sample : cpuSamples) {
            if (sample.getKey() >= tally.lastNanos()) {
                cpuUsed = new LinkedHashMap<>(sample.getValue()); // the first reading after the last delivery
                break;
            }
        }
        Map<String, Long> threadCpu = new LinkedHashMap<>();
        if (!s.raw()) {
            LocalServers.cpuMillisByThreadGroup(gatewayPid).forEach((k, v) -> {
                long used = v - threadsBefore.getOrDefault(k, 0L);
                if (used > 0) {
                    threadCpu.put(k, used);
                }
            });
        }
        sampling.set(false);
        long produceRequests = requestsBefore < 0 ? -1 : kafkaStats.produceRequests() - requestsBefore;
        cpuUsed.replaceAll((k, v) -> v - cpuBefore.get(k));
        if (s.raw()) {
            cpuUsed.remove("gateway");
            cpuUsed.remove("kafka");
        }
        double gatewayP99 = s.raw() ? Double.NaN
                : p99Millis(bucketsBefore, gateway.buckets("gateway_ingest_latency_seconds"));
        long droppedAfter = BrokerStats.droppedSoFar(servers.mosquitto.port);
        // -1: unknown (not readable, or a stale retained value read before a fresher one: it is up to 10 s old)
        long dropped = droppedBefore < 0 || droppedAfter < droppedBefore ? -1 : droppedAfter - droppedBefore;
        return new Result(s, sent, tally.delivered(), tally.duplicates(), tally.outOfOrder(), seconds,
                tally.latency, failures, cpuUsed, gatewayP99, dropped, window, produceRequests,
                s.raw() ? -1 : rssMax.get(), threadCpu,
                s.raw() ? -1 : Math.round(orZero(gateway.metric("gateway_mqtt_broker_lost_total")) - orZero(lostBefore)));
    }

    /** Until everything arrived, or nothing new arrived for IDLE_TIMEOUT, or MAX_SCENARIO passed. */
    private static void awaitDelivery(Tally tally, long expected, long start) {
        long lastCount = -1;
        long lastProgress = System.nanoTime();
        while (tally.delivered() < expected) {
            long now = System.nanoTime();
            long count = tally.delivered();
            if (count != lastCount) {
                lastCount = count;
                lastProgress = now;
            }
            if (now - lastProgress > IDLE_TIMEOUT.toNanos() || now - start > MAX_SCENARIO.toNanos()) {
                return;
            }
            LocalServers.pause(20);
        }
    }

    static String json(Result r, List<Result> soFar) {
        Scenario s = r.scenario();
        String limit = "";
        if (!s.raw()) {
            for (Result other : soFar) {
                if (other.scenario().raw() && other.scenario().qos() == s.qos()) {
                    limit = String.format(Locale.ROOT, ",\"raw_limit_msg_s\":%.0f,\"fraction_of_raw\":%.3f",
                            other.throughput(), r.throughput() / other.throughput());
                }
            }
        }
        return String.format(Locale.ROOT,
                "{\"scenario\":\"%s\",\"path\":\"%s\",\"devices\":%d,\"size\":%d,\"qos\":%d,\"rate\":%d,"
                        + "\"sent\":%d,\"delivered\":%d,\"missing\":%d,\"duplicates\":%d,\"out_of_order\":%d,"
                        + "\"publish_failures\":%d,\"broker_dropped\":%d,\"broker_lost\":%d,\"e2e_window\":%d,"
                        + "\"seconds\":%.3f,"
                        + "\"throughput_msg_s\":%.0f,\"latency_ms\":%s,"
                        + "\"gateway_p99_ms\":%s,\"gateway_cpu_us_per_msg\":%s,\"cpu_ms\":%s,"
                        + "\"gateway_cpu_percent\":%s,\"kafka_cpu_percent\":%s,\"produce_requests\":%d,"
                        + "\"produce_requests_per_s\":%s,\"gateway_rss_max_mib\":%d,"
                        + "\"gateway_jit_cpu_us_per_msg\":%s,\"gateway_cpu_by_thread_ms\":%s%s}",
                s.name(), s.raw() ? "broker->subscriber(mqtt" + System.getProperty("bench.raw.protocol", "5")
                        + ",receive-maximum=" + Integer.getInteger("bench.raw.receive-maximum", 60_000) + ")"
                        : "broker->gateway->kafka", s.devices(), s.size(), s.qos(),
                s.rate(), r.sent(), r.delivered(), r.missing(), r.duplicates(), r.outOfOrder(), r.publishFailures(),
                r.brokerDropped(), r.brokerLost(), r.window(), r.seconds(), r.throughput(), r.latency().json(),
                Double.isNaN(r.gatewayP99Millis()) ? "null" : String.format(Locale.ROOT, "%.1f", r.gatewayP99Millis()),
                Double.isNaN(r.gatewayCpuMicrosPerMessage()) ? "null"
                        : String.format(Locale.ROOT, "%.1f", r.gatewayCpuMicrosPerMessage()),
                cpuJson(r.cpuMillis()), num(r.cpuPercent("gateway")), num(r.cpuPercent("kafka")), r.produceRequests(),
                num(r.produceRequestsPerSecond()), r.rssMaxMiB(), num(r.gatewayJitMicrosPerMessage()),
                cpuJson(r.gatewayThreadCpu()), limit);
    }

    private static double orZero(double v) {
        return Double.isNaN(v) ? 0 : v;
    }

    private static String num(double v) {
        return Double.isNaN(v) ? "null" : String.format(Locale.ROOT, "%.1f", v);
    }

    static String cpuJson(Map<String, Long> cpu) {
        StringBuilder json = new StringBuilder("{");
        cpu.forEach((k, v) -> json.append(json.length() > 1 ? "," : "").append('"').append(k).append("\":").append(v));
        return json.append('}').toString();
    }

    static void printTable(List<Result> results) {
        System.out.println();
        System.out.printf("%-22s %8s %9s %7s %5s %6s %8s %9s %7s %8s %8s %10s %10s %7s %7s %7s %8s %8s%n", "scenario",
                "sent", "delivered", "missing", "dups", "ooo", "brk drop", "msg/s", "of raw", "p50 ms", "p99 ms",
                "gw p99 ms", "gw us/msg", "jit", "gw cpu%", "kf cpu%", "prod/s", "gw rss");
        for (Result r : results) {
            Result raw = r.scenario().raw() || r.scenario().rate() != 0 ? null : rawFor(results, r);
            String ofRaw = raw == null ? "" : String.format(Locale.ROOT, "%.0f%%", 100 * r.throughput() / raw.throughput());
            System.out.printf(Locale.ROOT, "%-22s %8d %9d %7d %5d %6d %8d %9.0f %7s %8.2f %8.2f %10s %10s %7s %7s %7s %8s %8s%n",
                    r.scenario().name(), r.sent(), r.delivered(), r.missing(), r.duplicates(), r.outOfOrder(),
                    r.brokerDropped(), r.throughput(), ofRaw, r.latency().percentileMillis(50),
                    r.latency().percentileMillis(99),
                    Double.isNaN(r.gatewayP99Millis()) ? "-" : String.format(Locale.ROOT, "%.1f", r.gatewayP99Millis()),
                    Double.isNaN(r.gatewayCpuMicrosPerMessage()) ? "-"
                            : String.format(Locale.ROOT, "%.1f", r.gatewayCpuMicrosPerMessage()),
                    dash(r.gatewayJitMicrosPerMessage()), dash(r.cpuPercent("gateway")), dash(r.scenario().raw() ? Double.NaN : r.cpuPercent("kafka")),
                    dash(r.produceRequestsPerSecond()), r.rssMaxMiB() < 0 ? "-" : r.rssMaxMiB() + "M");
        }
        System.out.println("ooo: messages that arrived after a later one of the same device; brk drop: messages"
                + " Mosquitto itself dropped ($SYS counter); unpaced scenarios keep at most bench.e2e-window ("
                + Long.getLong("bench.e2e-window", 1000) + ") messages published and not yet delivered; p50/p99: device"
                + " publish to Kafka consumer (end to end; raw: to the subscriber); gw p99: MQTT receipt to Kafka ack"
                + " inside the gateway (histogram bucket bound); gw us/msg: gateway process CPU (user+system) per"
                + " message; jit: the part of it spent by the JIT compiler threads (a young JVM's one-off cost);"
                + " gw cpu% / kf cpu%: gateway / Kafka broker CPU in % of one core over the scenario; prod/s:"
                + " produce requests the broker handled per second (all clients, JMX); gw rss: the gateway's largest"
                + " resident set during the scenario (sampled every 200 ms)");
        for (Result r : results) {
            if (r.missing() > 0 && r.brokerLost() >= 0) {
                System.out.printf(Locale.ROOT, "%s: %d missing; the gateway reported %d of them dropped for good by the"
                        + " broker (gateway_mqtt_broker_lost_total: skipped ids its resend did not include)%n",
                        r.scenario().name(), r.missing(), r.brokerLost());
            }
        }
        printCpuBudget(results);
        for (Result r : results) {
            if (!r.gatewayThreadCpu().isEmpty()) {
                StringBuilder line = new StringBuilder();
                r.gatewayThreadCpu().entrySet().stream().sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
                        .limit(8).forEach(e -> line.append(String.format(Locale.ROOT, "%s%s %.1f",
                                line.length() == 0 ? "" : ", ", e.getKey(), e.getValue() * 1000.0 / Math.max(1, r.delivered()))));
                System.out.printf("gateway CPU by thread, us/msg, %s: %s%n", r.scenario().name(), line);
            }
        }
    }

    /**
     * Where the machine's CPU went per delivered message in each unpaced scenario, and what that allows: every process
     * of the path shares this machine's cores (the simulated devices and the verifying consumer or raw subscriber run
     * in the bench's own JVM). For a gateway scenario: the rate its measured costs would allow with every core busy
     * ("ceiling"), and the rate they would allow if the gateway itself cost nothing ("without gateway"), each as a
     * share of the raw rate of the same QoS: a ratio target above the second one cannot be met on this machine
     * however cheap the gateway gets.
     */
    static void printCpuBudget(List<Result> results) {
        int cores = Runtime.getRuntime().availableProcessors();
        boolean header = false;
        for (Result r : results) {
            if (r.scenario().rate() != 0 || r.delivered() == 0 || r.seconds() <= 0) {
                continue;
            }
            if (!header) {
                System.out.printf("CPU per delivered message, us (all processes on this machine's %d cores; busy: their"
                        + " CPU over the scenario in %% of all cores):%n", cores);
                header = true;
            }
            StringBuilder line = new StringBuilder();
            double total = 0;
            double withoutGateway = 0;
            for (Map.Entry<String, Long> e : r.cpuMillis().entrySet()) {
                double us = e.getValue() * 1000.0 / r.delivered();
                total += us;
                withoutGateway += e.getKey().equals("gateway") ? 0 : us;
                line.append(String.format(Locale.ROOT, "%s %s %.1f", line.length() == 0 ? "" : ",", e.getKey(), us));
            }
            double busy = 100 * total * r.throughput() / 1e6 / cores;
            String bound = "";
            Result raw = rawFor(results, r);
            if (!r.scenario().raw() && raw != null && total > 0 && withoutGateway > 0) {
                double ceiling = cores * 1e6 / total;
                double free = cores * 1e6 / withoutGateway;
                bound = String.format(Locale.ROOT, "; ceiling %.0f msg/s (%.0f%% of raw), without gateway %.0f msg/s"
                        + " (%.0f%% of raw)", ceiling, 100 * ceiling / raw.throughput(), free,
                        100 * free / raw.throughput());
            }
            System.out.printf(Locale.ROOT, "  %-20s %s; total %.1f, busy %.0f%%%s%n", r.scenario().name(), line, total,
                    busy, bound);
        }
    }

    /** The raw scenario of this run with the same traffic (devices, messages, size, QoS, unpaced), or null. */
    static Result rawFor(List<Result> results, Result r) {
        Scenario s = r.scenario();
        for (Result raw : results) {
            Scenario t = raw.scenario();
            if (t.raw() && t.qos() == s.qos() && t.rate() == 0 && t.devices() == s.devices()
                    && t.perDevice() == s.perDevice() && t.size() == s.size()) {
                return raw;
            }
        }
        return null;
    }

    private static String dash(double v) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, "%.1f", v);
    }
}
