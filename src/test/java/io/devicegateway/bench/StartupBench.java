package io.devicegateway.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
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

/**
 * The startup benchmark: the packaged gateway started again and again on one JDK, as a plain JVM and with the
 * JDK 25 AOT cache ({@code target/quarkus-app/app.aot}, built by {@code make package-aot}), same jar, same
 * servers. Each run measures, from just before the process is launched:
 * <ul>
 * <li>time to ready: {@code /q/health/ready} answers 200 (polled every 10 ms);</li>
 * <li>time to first message: a device publishes {@code devices/<id>/telemetry} (QoS 1) every 10 ms from launch
 * on, and the first record of that device seen in {@code iot.telemetry} by a consumer polling every 10 ms;</li>
 * <li>RSS (VmRSS) and CPU time used by the process, read as soon as it is ready.</li>
 * </ul>
 * Each process gets SIGTERM before the next starts. Runs alternate between the variants (the order flips every
 * round) so drift on this shared machine hits both alike; one unreported warm-up run per variant first. Every wait
 * is bounded; it always stops by itself.
 *
 * <p>Options (system properties): {@code startup.runs} (per variant, default 5), {@code startup.warmup} (default
 * 1), {@code startup.java} (default {@code /usr/lib/jvm/temurin-25-jdk-amd64/bin/java}: the JDK that built the
 * cache), {@code startup.jvm} (extra JVM options for every variant, space-separated), {@code startup.timeout}
 * (seconds per wait, default 60), {@code startup.fastjar} (a {@code quarkus-run.jar} in the default fast-jar
 * layout, run as a third, reference variant without cache: {@code make startup} builds one in target/fastjar/).
 */
public final class StartupBench {

    record Variant(String name, Path jar, List<String> jvmOptions) {
    }

    record Run(double readyMs, double firstMessageMs, long rssKb, long cpuMsToReady, double quarkusStartedMs) {
    }

    private static final Path APP_DIR = Paths.get("target", "quarkus-app");
    private static final Pattern STARTED = Pattern.compile("started in ([0-9.]+)s");

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
        String java = System.getProperty("startup.java", "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java");
        Path aot = APP_DIR.resolve("app.aot").toAbsolutePath();
        Path jar = APP_DIR.resolve("quarkus-run.jar");
        if (!Files.isExecutable(Paths.get(java))) {
            fail("no JDK at " + java + " (-Dstartup.java=<path to the java binary of the JDK that built the cache>)");
        }
        if (!Files.exists(aot) || !Files.exists(jar)
                || Files.getLastModifiedTime(aot).compareTo(Files.getLastModifiedTime(jar)) < 0) {
            fail("no AOT cache for the current jar in " + APP_DIR + ": run `make package-aot` first (a plain "
                    + "`mvn package` replaces the aot-jar layout and leaves no cache)");
        }
        List<String> extra = new ArrayList<>();
        String extraOptions = System.getProperty("startup.jvm", "").trim();
        if (!extraOptions.isEmpty()) {
            extra.addAll(Arrays.asList(extraOptions.split("\\s+")));
        }
        List<String> aotOptions = new ArrayList<>(extra);
        // AOTMode=on: refuse to start rather than silently run without the cache (wrong JDK, changed jars)
        aotOptions.addAll(List.of("-XX:AOTCache=" + aot, "-XX:AOTMode=on"));
        List<Variant> variants = new ArrayList<>(List.of(new Variant("jvm", jar, extra),
                new Variant("jvm+aot-cache", jar, aotOptions)));
        // optional reference: the default packaging (fast-jar, no cache) on the same JDK, i.e. what ships today
        String fastJar = System.getProperty("startup.fastjar", "").trim();
        if (!fastJar.isEmpty()) {
            if (!Files.exists(Paths.get(fastJar))) {
                fail("no fast-jar at " + fastJar + " (-Dstartup.fastjar)");
            }
            variants.add(new Variant("fast-jar (ref)", Paths.get(fastJar), extra));
        }

        System.err.printf("startup: %s, %d run(s) per variant after %d warm-up(s); starting Kafka, Mosquitto, Redis%n",
                java, runs, warmups);
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
                                "startup: %-14s %-9s ready %7.0f ms, first message %7.0f ms, RSS %4d MiB, "
                                        + "CPU %5d ms, Quarkus 'started in' %5.0f ms%n",
                                v.name(), label, r.readyMs(), r.firstMessageMs(), r.rssKb() / 1024, r.cpuMsToReady(),
                                r.quarkusStartedMs());
                        if (round >= 0) {
                            results.get(v.name()).add(r);
                        }
                    }
                }
                report(java, results);
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
        Path log = servers.workDir.resolve("gateway-" + n + "-" + variant.name().replaceAll("[^a-z+-]", "") + ".log");
        AtomicBoolean done = new AtomicBoolean();
        AtomicLong readyAt = new AtomicLong();
        AtomicLong rssKb = new AtomicLong(-1);
        AtomicLong cpuMs = new AtomicLong(-1);
        long deadline;

        long t0 = System.nanoTime();
        GatewayProcess gateway = GatewayProcess.start(java, variant.jar(), config, variant.jvmOptions(), log);
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
            return new Run((readyAt.get() - t0) / 1e6, (firstAt - t0) / 1e6, rssKb.get(), cpuMs.get(),
                    quarkusStartedMillis(log));
        } finally {
            done.set(true);
            gateway.stop(false);
        }
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

    /** Quarkus's own "started in X s" from the gateway log (NaN if absent). */
    static double quarkusStartedMillis(Path log) {
        try {
            Matcher m = STARTED.matcher(Files.readString(log));
            return m.find() ? Double.parseDouble(m.group(1)) * 1000 : Double.NaN;
        } catch (IOException | RuntimeException e) {
            return Double.NaN;
        }
    }

    record Summary(double median, double min, double max) {
        static Summary of(List<Run> runs, ToDoubleFunction<Run> metric) {
            double[] v = runs.stream().mapToDouble(metric).sorted().toArray();
            int n = v.length;
            double median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
            return new Summary(median, v[0], v[n - 1]);
        }

        String json() {
            return String.format(Locale.ROOT, "{\"median\":%.1f,\"min\":%.1f,\"max\":%.1f}", median, min, max);
        }

        String cell() {
            return String.format(Locale.ROOT, "%.0f (%.0f-%.0f)", median, min, max);
        }
    }

    static void report(String java, Map<String, List<Run>> results) {
        String jdk = jdkVersion(java);
        Map<String, Map<String, Summary>> table = new LinkedHashMap<>();
        for (Map.Entry<String, List<Run>> e : results.entrySet()) {
            List<Run> runs = e.getValue();
            Map<String, Summary> s = new LinkedHashMap<>();
            s.put("time_to_ready_ms", Summary.of(runs, Run::readyMs));
            s.put("time_to_first_message_ms", Summary.of(runs, Run::firstMessageMs));
            s.put("rss_at_ready_mib", Summary.of(runs, r -> r.rssKb() / 1024.0));
            s.put("cpu_to_ready_ms", Summary.of(runs, Run::cpuMsToReady));
            s.put("quarkus_started_in_ms", Summary.of(runs, Run::quarkusStartedMs));
            table.put(e.getKey(), s);
            StringBuilder json = new StringBuilder(String.format(Locale.ROOT,
                    "{\"variant\":\"%s\",\"jdk\":\"%s\",\"runs\":%d", e.getKey(), jdk, runs.size()));
            s.forEach((k, v) -> json.append(",\"").append(k).append("\":").append(v.json()));
            json.append(",\"samples_ready_ms\":").append(Arrays.toString(runs.stream()
                    .mapToLong(r -> Math.round(r.readyMs())).toArray()));
            System.out.println(json.append('}'));
        }
        List<String> names = new ArrayList<>(table.keySet());
        Map<String, Summary> plain = table.get(names.get(0));
        Map<String, Summary> aot = table.get(names.get(1));
        Map<String, Summary> ref = names.size() > 2 ? table.get(names.get(2)) : null;
        System.out.printf("%nstartup on %s, median (min-max) of %d runs each%n", jdk, results.get(names.get(0)).size());
        System.out.printf("%-26s", "metric");
        names.forEach(n -> System.out.printf(" %22s", n));
        System.out.printf(" %10s%s%n", "aot/plain", ref == null ? "" : String.format(" %13s", "aot/fast-jar"));
        for (String metric : plain.keySet()) {
            System.out.printf("%-26s", metric);
            for (String n : names) {
                System.out.printf(" %22s", table.get(n).get(metric).cell());
            }
            System.out.printf(Locale.ROOT, " %10.2f", aot.get(metric).median() / plain.get(metric).median());
            if (ref != null) {
                System.out.printf(Locale.ROOT, " %13.2f", aot.get(metric).median() / ref.get(metric).median());
            }
            System.out.println();
        }
        double readyRatio = ratio(aot, plain, "time_to_ready_ms");
        System.out.println(String.format(Locale.ROOT,
                "{\"ratio_aot_to_plain\":{\"time_to_ready\":%.3f,\"time_to_first_message\":%.3f,\"rss_at_ready\":%.3f},"
                        + "%s\"target_time_to_ready_at_most\":0.5,\"target_met\":%s}",
                readyRatio, ratio(aot, plain, "time_to_first_message_ms"), ratio(aot, plain, "rss_at_ready_mib"),
                ref == null ? "" : String.format(Locale.ROOT,
                        "\"ratio_aot_to_fastjar\":{\"time_to_ready\":%.3f,\"time_to_first_message\":%.3f,"
                                + "\"rss_at_ready\":%.3f},",
                        ratio(aot, ref, "time_to_ready_ms"), ratio(aot, ref, "time_to_first_message_ms"),
                        ratio(aot, ref, "rss_at_ready_mib")),
                readyRatio <= 0.5));
        System.out.println("time to ready / first message: from process launch; RSS and CPU: read when ready; "
                + "'started in': Quarkus's own figure (counted from its main, so JVM boot is not in it)");
    }

    private static double ratio(Map<String, Summary> a, Map<String, Summary> b, String metric) {
        return a.get(metric).median() / b.get(metric).median();
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
