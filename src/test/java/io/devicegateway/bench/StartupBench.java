package io.devicegateway.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.LocalTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.ToDoubleFunction;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.PodJvm;

/**
 * The startup benchmark: process start to the first device message written to Kafka, the gateway started again and
 * again the way a pod starts it: the JVM options and memory limit of the manifests ({@link PodJvm}), on the JDK of
 * the images (Temurin 25). Variants, same servers:
 * <ul>
 * <li>{@code jvm}: the default fast-jar packaging ({@code startup.fastjar}, {@code make startup} builds it in
 * target/fastjar/), no cache: what the plain JVM image ships;</li>
 * <li>{@code jvm+aot-cache}: the aot-jar packaging with its JDK 25 AOT cache ({@code target/quarkus-app/app.aot},
 * {@code make package-aot}), with {@code -XX:AOTMode=on} so a cache that does not fit fails instead of being
 * silently ignored;</li>
 * <li>{@code native}: a native executable, only with {@code -Dstartup.native=target/<name>-runner} (CI builds one;
 * these machines cannot).</li>
 * </ul>
 * Each run measures, from just before the process is launched:
 * <ul>
 * <li>time to first message, the headline: a device publishes {@code devices/<id>/telemetry} (QoS 1) every 10 ms from
 * launch on, and a consumer polling {@code iot.telemetry} every 10 ms sees the first record of that device;</li>
 * <li>time to ready: {@code /q/health/ready} answers 200 (polled every 10 ms);</li>
 * <li>RSS (VmRSS) and CPU time of the process, read as soon as it is ready;</li>
 * <li>where the time went, from the gateway's log: launch to Quarkus's main (JVM boot and class loading of the
 * bootstrap), main to the MQTT connect starting (Quarkus start and the gateway's startup observers), connect to
 * CONNACK (Redis lease, TCP, MQTT), and on to ready and to the first message.</li>
 * </ul>
 * Each process gets SIGTERM before the next starts. Runs alternate between the variants (the order flips every
 * round) so drift on a shared machine hits all alike; one unreported warm-up run per variant first. Every wait is
 * bounded; it always stops by itself.
 *
 * <p>Options (system properties): {@code startup.runs} (per variant, default 5), {@code startup.warmup} (default
 * 1), {@code startup.java} (default: JDK 25 if installed: the JDK that built the cache), {@code startup.jvm} (extra
 * JVM options for the JVM variants, space-separated), {@code startup.pod-jvm} (default true: the manifests' options;
 * false: none), {@code startup.timeout} (seconds per wait, default 60), {@code startup.fastjar} (the fast-jar's
 * {@code quarkus-run.jar}), {@code startup.native} (a native executable), {@code startup.variants} (comma-separated
 * subset of jvm, jvm+aot-cache, native), {@code startup.ref-jar} (another build's quarkus-run.jar, run as variant
 * {@code ref} alongside: before/after in the same minutes), {@code startup.ref-jvm} (extra JVM options for
 * {@code ref} only: with the same jar as {@code startup.fastjar}, an A/B of JVM options).
 */
public final class StartupBench {

    record Variant(String name, Path jar, List<String> jvmOptions, boolean nativeExecutable) {
    }

    /** Milliseconds from launch; NaN when the log did not show the step. */
    record Run(double readyMs, double firstMessageMs, long rssKb, long cpuMsToReady, double quarkusStartedMs,
            double mainMs, double mqttStartMs, double mqttConnectedMs) {
    }

    private static final Path APP_DIR = Paths.get("target", "quarkus-app");
    private static final Pattern STARTED = Pattern.compile("started in ([0-9.]+)s");
    /** The log format the benchmark gives the gateway: a millisecond time stamp first. */
    private static final String LOG_FORMAT = "%d{HH:mm:ss.SSS} %-5p [%c{2.}] (%t) %s%e%n";
    private static final Pattern STAMP = Pattern.compile("^(\\d\\d:\\d\\d:\\d\\d\\.\\d\\d\\d) ");
    /** Headline targets: process start to the first message in Kafka. */
    private static final Map<String, Double> TARGET_FIRST_MESSAGE_MS = Map.of("jvm", 1000.0, "jvm+aot-cache", 500.0);

    public static void main(String[] args) {
        int status = 0;
        try {
            run();
        } catch (Exception e) {
            e.printStackTrace();
            status = 1;
        }
        System.exit(status); // MQTT and Kafka client threads must not keep a finished run alive
    }

    static void run() throws Exception {
        int runs = Integer.getInteger("startup.runs", 5);
        int warmups = Integer.getInteger("startup.warmup", 1);
        Duration timeout = Duration.ofSeconds(Integer.getInteger("startup.timeout", 60));
        String java = PodJvm.java("startup.java");
        List<String> wanted = Arrays.asList(System.getProperty("startup.variants", "jvm,jvm+aot-cache,native")
                .split("\\s*,\\s*"));
        if (!Files.isExecutable(Paths.get(java))) {
            fail("no JDK at " + java + " (-Dstartup.java=<path to the java binary of the JDK that built the cache>)");
        }
        List<String> options = new ArrayList<>(Boolean.parseBoolean(System.getProperty("startup.pod-jvm", "true"))
                ? PodJvm.emulatedOptions() : List.of());
        String extraOptions = System.getProperty("startup.jvm", "").trim();
        if (!extraOptions.isEmpty()) {
            options.addAll(Arrays.asList(extraOptions.split("\\s+")));
        }

        List<Variant> variants = new ArrayList<>();
        if (wanted.contains("jvm")) {
            Path fastJar = Paths.get(System.getProperty("startup.fastjar", "target/fastjar/quarkus-run.jar"));
            if (!Files.exists(fastJar)) {
                fail("no fast-jar at " + fastJar + " (-Dstartup.fastjar; `make startup` builds target/fastjar/)");
            }
            variants.add(new Variant("jvm", fastJar, options, false));
        }
        if (wanted.contains("jvm+aot-cache")) {
            Path aot = APP_DIR.resolve("app.aot").toAbsolutePath();
            Path jar = APP_DIR.resolve("quarkus-run.jar");
            if (!Files.exists(aot) || !Files.exists(jar)
                    || Files.getLastModifiedTime(aot).compareTo(Files.getLastModifiedTime(jar)) < 0) {
                fail("no AOT cache for the current jar in " + APP_DIR + ": run `make package-aot` first (a plain "
                        + "`mvn package` replaces the aot-jar layout and leaves no cache)");
            }
            List<String> aotOptions = new ArrayList<>(options);
            // AOTMode=on: refuse to start rather than silently run without the cache (wrong JDK, options or jars)
            aotOptions.addAll(List.of("-XX:AOTCache=" + aot, "-XX:AOTMode=on"));
            variants.add(new Variant("jvm+aot-cache", jar, aotOptions, false));
        }
        // another build's quarkus-run.jar (e.g. the previous version) started the same way, alternating with the others:
        // a before/after in the same minutes on a shared machine
        String refJar = System.getProperty("startup.ref-jar", "").trim();
        if (!refJar.isEmpty()) {
            variants.add(new Variant("ref", Paths.get(refJar), withExtra(options, "startup.ref-jvm"), false));
        }
        String nativeExecutable = System.getProperty("startup.native", "").trim();
        if (wanted.contains("native") && !nativeExecutable.isEmpty()) {
            variants.add(new Variant("native", Paths.get(nativeExecutable), List.of(), true));
        }
        if (variants.isEmpty()) {
            fail("no variant to run (startup.variants=" + wanted + ")");
        }

        System.err.printf("startup: %s %s%nstartup: %s, %d run(s) per variant after %d warm-up(s); starting Kafka, "
                + "Mosquitto, Redis%n", java, String.join(" ", options), variants.stream().map(Variant::name).toList(),
                runs, warmups);
        try (LocalServers servers = LocalServers.start("startup");
                KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
            try {
                Map<String, List<Run>> results = new LinkedHashMap<>();
                variants.forEach(v -> results.put(v.name(), new ArrayList<>()));
                int counter = 0;
                for (int round = -warmups; round < runs; round++) {
                    List<Variant> order = new ArrayList<>(variants);
                    if (Math.floorMod(round, 2) == 1) {
                        Collections.reverse(order);
                    }
                    for (Variant v : order) {
                        String label = round < 0 ? "warm-up" : "run " + (round + 1) + "/" + runs;
                        Run r = runOnce(servers, telemetry, device, java, v, ++counter, timeout);
                        System.err.printf(Locale.ROOT,
                                "startup: %-14s %-9s first message %6.0f ms, ready %6.0f ms, RSS %4d MiB, CPU %5d ms "
                                        + "(main at %4.0f, MQTT connect from %5.0f, connected %5.0f ms)%n",
                                v.name(), label, r.firstMessageMs(), r.readyMs(), r.rssKb() / 1024, r.cpuMsToReady(),
                                r.mainMs(), r.mqttStartMs(), r.mqttConnectedMs());
                        if (round >= 0) {
                            results.get(v.name()).add(r);
                        }
                    }
                }
                report(java, options, results);
            } finally {
                device.disconnect();
            }
        }
    }

    static Run runOnce(LocalServers servers, KafkaRecords telemetry, Mqtt3BlockingClient device, String java,
            Variant variant, int n, Duration timeout) throws Exception {
        String deviceId = Devices.uniqueId("startup");
        Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
        // a fresh MQTT session per run: nothing queued by an earlier run is delivered at connect
        config.put("gateway.mqtt.client-id", "dgw-startup-" + n + "-" + deviceId);
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        // plain text with millisecond stamps, for the phases (the pods log JSON; same information)
        config.put("quarkus.log.console.json.enabled", "false");
        config.put("quarkus.log.console.format", LOG_FORMAT);
        Path log = servers.workDir.resolve("gateway-" + n + "-" + variant.name().replaceAll("[^a-z+-]", "") + ".log");
        AtomicBoolean done = new AtomicBoolean();
        AtomicLong readyAt = new AtomicLong();
        AtomicLong rssKb = new AtomicLong(-1);
        AtomicLong cpuMs = new AtomicLong(-1);
        long deadline;

        LocalTime launchedAt = LocalTime.now();
        long t0 = System.nanoTime();
        GatewayProcess gateway = variant.nativeExecutable()
                ? GatewayProcess.startExecutable(variant.jar(), config, log)
                : GatewayProcess.start(java, variant.jar(), config, variant.jvmOptions(), log, PodJvm.environment());
        deadline = t0 + timeout.toNanos();
        try {
            final long end = deadline;
            Thread publisher = new Thread(() -> {
                String topic = "devices/" + deviceId + "/telemetry";
                int seq = 0;
                while (!done.get() && System.nanoTime() < end) {
                    long sent = System.nanoTime() - t0;
                    Devices.publish(device, topic, ("seq=" + seq++ + " t=" + sent).getBytes(StandardCharsets.UTF_8), 1);
                    LocalServers.pause(10);
                }
            }, "startup-publisher");
            Thread readiness = new Thread(() -> {
                while (System.nanoTime() < end && gateway.alive()) {
                    if (gateway.ready()) {
                        readyAt.set(System.nanoTime());
                        rssKb.set(rssKb(gateway.pid()));
                        cpuMs.set(LocalServers.cpuMillis(gateway.pid()));
                        return;
                    }
                    LocalServers.pause(10);
                }
            }, "startup-readiness");
            publisher.setDaemon(true);
            readiness.setDaemon(true);
            publisher.start();
            readiness.start();

            long firstAt = 0;
            while (firstAt == 0 && System.nanoTime() < deadline && gateway.alive()) {
                for (var record : telemetry.poll(Duration.ofMillis(10))) {
                    if (deviceId.equals(record.key())) {
                        firstAt = System.nanoTime();
                        break;
                    }
                }
            }
            done.set(true);
            readiness.join(Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
            publisher.join(5_000);
            if (!gateway.alive()) {
                fail(variant.name() + ": the gateway exited (" + gateway.waitForExit(Duration.ofSeconds(1))
                        + "), see " + log);
            }
            if (firstAt == 0 || readyAt.get() == 0) {
                fail(variant.name() + ": not " + (readyAt.get() == 0 ? "ready" : "bridging") + " within " + timeout
                        + ", see " + log);
            }
            gateway.stop(false);
            String text = Files.readString(log);
            double started = quarkusStartedMillis(text);
            double startedLine = stampMillis(text, "started in", launchedAt);
            return new Run((readyAt.get() - t0) / 1e6, (firstAt - t0) / 1e6, rssKb.get(), cpuMs.get(), started,
                    startedLine - started, stampMillis(text, "MQTT (5|3.1.1) to ", launchedAt),
                    stampMillis(text, "MQTT connected to", launchedAt));
        } finally {
            done.set(true);
            gateway.stop(false);
        }
    }

    /** {@code options} plus the space-separated JVM options of system property {@code key} (none if unset). */
    static List<String> withExtra(List<String> options, String key) {
        List<String> all = new ArrayList<>(options);
        String extra = System.getProperty(key, "").trim();
        if (!extra.isEmpty()) {
            all.addAll(Arrays.asList(extra.split("\\s+")));
        }
        return all;
    }

    /** VmRSS of a process in KiB, -1 if it cannot be read. */
    static long rssKb(long pid) {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc", Long.toString(pid), "status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (IOException | RuntimeException e) {
            // gone
        }
        return -1;
    }

    /** Quarkus's own "started in X s" (NaN if absent): counted from its main, so JVM boot is not in it. */
    static double quarkusStartedMillis(String log) {
        Matcher m = STARTED.matcher(log);
        return m.find() ? Double.parseDouble(m.group(1)) * 1000 : Double.NaN;
    }

    /** Milliseconds from launch to the time stamp of the first log line matching {@code regex}; NaN if none. */
    static double stampMillis(String log, String regex, LocalTime launchedAt) {
        Pattern p = Pattern.compile(regex);
        for (String line : log.split("\n")) {
            Matcher stamp = STAMP.matcher(line);
            if (stamp.find() && p.matcher(line).find()) {
                long ms = Duration.between(launchedAt, LocalTime.parse(stamp.group(1))).toMillis();
                return ms < -43_200_000 ? ms + 86_400_000 : ms; // past midnight
            }
        }
        return Double.NaN;
    }

    record Summary(double median, double min, double max) {
        static Summary of(List<Run> runs, ToDoubleFunction<Run> metric) {
            double[] v = runs.stream().mapToDouble(metric).filter(x -> !Double.isNaN(x)).sorted().toArray();
            int n = v.length;
            if (n == 0) {
                return new Summary(Double.NaN, Double.NaN, Double.NaN);
            }
            double median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
            return new Summary(median, v[0], v[n - 1]);
        }

        String json() {
            return Double.isNaN(median) ? "null"
                    : String.format(Locale.ROOT, "{\"median\":%.1f,\"min\":%.1f,\"max\":%.1f}", median, min, max);
        }

        String cell() {
            return Double.isNaN(median) ? "-" : String.format(Locale.ROOT, "%.0f (%.0f-%.0f)", median, min, max);
        }
    }

    static void report(String java, List<String> options, Map<String, List<Run>> results) {
        String jdk = jdkVersion(java);
        Map<String, Map<String, Summary>> table = new LinkedHashMap<>();
        for (Map.Entry<String, List<Run>> e : results.entrySet()) {
            List<Run> runs = e.getValue();
            Map<String, Summary> s = new LinkedHashMap<>();
            s.put("time_to_first_message_ms", Summary.of(runs, Run::firstMessageMs));
            s.put("time_to_ready_ms", Summary.of(runs, Run::readyMs));
            s.put("rss_at_ready_mib", Summary.of(runs, r -> r.rssKb() / 1024.0));
            s.put("cpu_to_ready_ms", Summary.of(runs, Run::cpuMsToReady));
            s.put("quarkus_started_in_ms", Summary.of(runs, Run::quarkusStartedMs));
            s.put("phase_launch_to_main_ms", Summary.of(runs, Run::mainMs));
            s.put("phase_main_to_mqtt_connect_ms", Summary.of(runs, r -> r.mqttStartMs() - r.mainMs()));
            s.put("phase_mqtt_connect_to_connack_ms", Summary.of(runs, r -> r.mqttConnectedMs() - r.mqttStartMs()));
            s.put("phase_connack_to_ready_ms", Summary.of(runs, r -> r.readyMs() - r.mqttConnectedMs()));
            s.put("phase_connack_to_first_message_ms", Summary.of(runs, r -> r.firstMessageMs() - r.mqttConnectedMs()));
            table.put(e.getKey(), s);
            StringBuilder json = new StringBuilder(String.format(Locale.ROOT,
                    "{\"variant\":\"%s\",\"jdk\":\"%s\",\"runs\":%d", e.getKey(), jdk, runs.size()));
            s.forEach((k, v) -> json.append(",\"").append(k).append("\":").append(v.json()));
            json.append(",\"samples_first_message_ms\":").append(Arrays.toString(runs.stream()
                    .mapToLong(r -> Math.round(r.firstMessageMs())).toArray()));
            Double target = TARGET_FIRST_MESSAGE_MS.get(e.getKey());
            if (target != null) {
                json.append(String.format(Locale.ROOT, ",\"target_first_message_ms\":%.0f,\"target_met\":%s", target,
                        s.get("time_to_first_message_ms").median() <= target));
            }
            System.out.println(json.append('}'));
        }
        List<String> names = new ArrayList<>(table.keySet());
        System.out.printf("%nstartup on %s, median (min-max) of %d runs each; JVM options: %s%n", jdk,
                results.get(names.get(0)).size(), String.join(" ", options));
        System.out.printf("%-34s", "metric (ms from process launch)");
        names.forEach(n -> System.out.printf(" %22s", n));
        System.out.println();
        for (String metric : table.get(names.get(0)).keySet()) {
            System.out.printf("%-34s", metric);
            for (String n : names) {
                System.out.printf(" %22s", table.get(n).get(metric).cell());
            }
            System.out.println();
        }
        System.out.printf("%-34s", "target: first message at most");
        for (String n : names) {
            Double target = TARGET_FIRST_MESSAGE_MS.get(n);
            System.out.printf(" %22s", target == null ? "-" : String.format(Locale.ROOT, "%.0f ms: %s", target,
                    table.get(n).get("time_to_first_message_ms").median() <= target ? "met" : "NOT met"));
        }
        System.out.println();
        System.out.println("first message: a device publishes every 10 ms from launch on, a consumer polls iot.telemetry "
                + "every 10 ms; ready: /q/health/ready polled every 10 ms; RSS and CPU: read when ready; phases from the "
                + "gateway's log: main = Quarkus's main (launch to it: JVM boot, bootstrap class loading), MQTT connect = "
                + "the connection starting after Quarkus's start and the startup observers, CONNACK = connected (lease, "
                + "TCP, MQTT); 'started in' is Quarkus's own figure from its main");
    }

    static String jdkVersion(String java) {
        try {
            Process p = new ProcessBuilder(java, "-version").redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            p.waitFor(10, TimeUnit.SECONDS);
            Matcher m = Pattern.compile("build ([^,)]+)\\)").matcher(out);
            String build = m.find() ? m.group(1) : "?";
            return (out.contains("Temurin") ? "Temurin " : "") + build;
        } catch (IOException | InterruptedException e) {
            return "?";
        }
    }

    private static void fail(String message) {
        System.err.println("startup: " + message);
        throw new IllegalStateException(message);
    }

    private StartupBench() {
    }
}
