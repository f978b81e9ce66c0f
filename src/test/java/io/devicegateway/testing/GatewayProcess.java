package io.devicegateway.testing;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The packaged gateway ({@code target/quarkus-app/quarkus-run.jar}) as a separate process, the way it runs in
 * a pod: for the local run, the benchmark and the fault scenarios.
 */
public final class GatewayProcess implements AutoCloseable {

    /** The jar {@link #start(Map, List, Path)} runs. */
    public static final Path DEFAULT_JAR = Paths.get("target", "quarkus-app", "quarkus-run.jar");

    public final int httpPort;
    private final Process process;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

    private GatewayProcess(int httpPort, Process process) {
        this.httpPort = httpPort;
        this.process = process;
    }

    /**
     * Starts the gateway with the given configuration (as system properties) and extra JVM options; output goes
     * to {@code logFile}, or to this process's console when it is null.
     */
    public static GatewayProcess start(Map<String, String> config, List<String> jvmOptions, Path logFile) {
        return start(LocalServers.java(), DEFAULT_JAR, config, jvmOptions, logFile);
    }

    /**
     * As {@link #start(Map, List, Path)}, with the {@code java} binary to run it (e.g. a JDK 25 for the AOT cache,
     * which only works with the JDK build that created it) instead of the current JVM's, and the jar.
     */
    public static GatewayProcess start(String javaBinary, Path jar, Map<String, String> config,
            List<String> jvmOptions, Path logFile) {
        return start(javaBinary, jar, config, jvmOptions, logFile, Map.of());
    }

    /**
     * As {@link #start(Map, List, Path)}, with extra environment variables for the process (e.g. {@code HOSTNAME},
     * which with the HTTP port makes the gateway's instance id, as a pod name does).
     */
    public static GatewayProcess start(Map<String, String> config, List<String> jvmOptions, Path logFile,
            Map<String, String> env) {
        return start(LocalServers.java(), DEFAULT_JAR, config, jvmOptions, logFile, env);
    }

    /** As {@link #start(String, Path, Map, List, Path)}, with extra environment variables for the process. */
    public static GatewayProcess start(String javaBinary, Path jar, Map<String, String> config,
            List<String> jvmOptions, Path logFile, Map<String, String> env) {
        if (!Files.exists(jar)) {
            throw new IllegalStateException("Build the gateway first: mvn package -DskipTests (no " + jar + ")");
        }
        int port = config.containsKey("quarkus.http.port") ? Integer.parseInt(config.get("quarkus.http.port"))
                : LocalServers.freePort();
        List<String> command = new ArrayList<>(List.of(javaBinary));
        command.addAll(jvmOptions);
        config.forEach((k, v) -> command.add("-D" + k + "=" + v));
        command.add("-Dquarkus.http.port=" + port);
        command.add("-jar");
        command.add(jar.toString());
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().putAll(env);
        if (logFile == null) {
            builder.inheritIO();
        } else {
            builder.redirectErrorStream(true).redirectOutput(logFile.toFile());
        }
        try {
            return new GatewayProcess(port, builder.start());
        } catch (IOException e) {
            throw new IllegalStateException("Cannot start the gateway", e);
        }
    }

    /**
     * A native executable of the gateway (target/*-runner), configuration as system properties like the JVM
     * variants: for the startup benchmark where a native build exists (CI).
     */
    public static GatewayProcess startExecutable(Path executable, Map<String, String> config, Path logFile) {
        if (!Files.isExecutable(executable)) {
            throw new IllegalStateException("not an executable: " + executable);
        }
        int port = config.containsKey("quarkus.http.port") ? Integer.parseInt(config.get("quarkus.http.port"))
                : LocalServers.freePort();
        List<String> command = new ArrayList<>(List.of(executable.toString()));
        config.forEach((k, v) -> command.add("-D" + k + "=" + v));
        command.add("-Dquarkus.http.port=" + port);
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(logFile.toFile());
        try {
            return new GatewayProcess(port, builder.start());
        } catch (IOException e) {
            throw new IllegalStateException("Cannot start " + executable, e);
        }
    }

    public boolean ready() {
        try {
            HttpResponse<Void> response = http.send(HttpRequest.newBuilder(url("/q/health/ready"))
                    .timeout(Duration.ofSeconds(2)).build(), HttpResponse.BodyHandlers.discarding());
            return response.statusCode() == 200;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** Polls readiness until it is up; fails if the process exits or the timeout passes. */
    public GatewayProcess awaitReady(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!ready()) {
            if (!process.isAlive()) {
                throw new IllegalStateException("gateway exited with " + process.exitValue());
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("gateway not ready within " + timeout);
            }
            LocalServers.pause(50);
        }
        return this;
    }

    public String metrics() {
        try {
            return http.send(HttpRequest.newBuilder(url("/q/metrics")).build(), HttpResponse.BodyHandlers.ofString())
                    .body();
        } catch (IOException e) {
            return "";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "";
        }
    }

    /** A metric sample by its exact name-and-labels prefix, e.g. {@code gateway_ingest_in_flight}; NaN if absent. */
    public double metric(String series) {
        return PrometheusText.sample(metrics(), series);
    }

    /** Cumulative histogram buckets of a Prometheus histogram: upper bound in seconds to count. */
    public java.util.TreeMap<Double, Double> buckets(String histogram) {
        java.util.TreeMap<Double, Double> buckets = new java.util.TreeMap<>();
        String prefix = histogram + "_bucket{le=\"";
        for (String line : metrics().split("\n")) {
            if (line.startsWith(prefix)) {
                String le = line.substring(prefix.length(), line.indexOf('"', prefix.length()));
                double bound = le.equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(le);
                buckets.put(bound, Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1)));
            }
        }
        return buckets;
    }

    public long pid() {
        return process.pid();
    }

    public boolean alive() {
        return process.isAlive();
    }

    /** SIGTERM (graceful) or SIGKILL; waits for the exit. */
    public void stop(boolean kill) {
        LocalServers.stopProcess(process, kill);
    }

    public int waitForExit(Duration timeout) throws InterruptedException {
        return process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS) ? process.exitValue() : -1;
    }

    private URI url(String path) {
        return URI.create("http://127.0.0.1:" + httpPort + path);
    }

    @Override
    public void close() {
        stop(false);
    }
}
