package io.devicegateway.bench;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.MosquittoDynsec;
import io.devicegateway.v1.RegisterDeviceRequest;
import io.grpc.ManagedChannel;

/**
 * {@code make registry-bench}: the packaged gateway (a separate process) against local Kafka, Redis and a Mosquitto
 * with dynamic security. Scenarios, each a JSON line:
 * <ul>
 * <li>{@code register}: RegisterDevice calls from {@code registry.bench.concurrency} (8) agents, each including the
 * PBKDF2 hash (default iterations), the Redis script, the iot.registry record and the broker's createClient;</li>
 * <li>{@code hook-auth-cold}: {@code /mqtt/auth} for devices not yet verified (the slow hash every call);</li>
 * <li>{@code hook-auth-cached} / {@code hook-acl}: the hook under load ({@code registry.bench.hook-concurrency}, 32
 * callers, {@code registry.bench.hook-calls} 20,000 calls), the broker's steady state.</li>
 * </ul>
 * Options: {@code -Dregistry.bench.devices=200}, {@code -Dbench.gateway.config=key=value;...}.
 */
public final class RegistryBench {

    static final String SECRET = "registry-bench-secret";

    public static void main(String[] args) throws Exception {
        int devices = Integer.getInteger("registry.bench.devices", 200);
        int concurrency = Integer.getInteger("registry.bench.concurrency", 8);
        int hookConcurrency = Integer.getInteger("registry.bench.hook-concurrency", 32);
        int hookCalls = Integer.getInteger("registry.bench.hook-calls", 20_000);
        try (LocalServers servers = LocalServers.startWith("registry-bench", 0,
                m -> MosquittoDynsec.configure(m, "registry-bench"))) {
            Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
            config.put("gateway.mqtt.client-id", "dgw-registry-bench");
            config.put("gateway.mqtt.username", MosquittoDynsec.GATEWAY_USER);
            config.put("gateway.mqtt.password", MosquittoDynsec.GATEWAY_PASSWORD);
            config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
            config.put("gateway.registry.mosquitto-dynsec.enabled", "true");
            byte[] key = new byte[32];
            new java.security.SecureRandom().nextBytes(key);
            config.put("gateway.registry.mosquitto-dynsec.pending-key", Base64.getEncoder().encodeToString(key));
            config.put("gateway.registry.auth-hook.secret", SECRET);
            for (String kv : System.getProperty("bench.gateway.config", "").split(";")) {
                int eq = kv.indexOf('=');
                if (eq > 0) {
                    config.put(kv.substring(0, eq).trim(), kv.substring(eq + 1).trim());
                }
            }
            Path log = servers.workDir.resolve("gateway.log");
            System.err.println("registry-bench: starting the gateway, log in " + log);
            try (GatewayProcess gateway = GatewayProcess.start(ProcessHandle.current().info().command()
                    .orElse("java"), GatewayProcess.DEFAULT_JAR, config, List.of("-Xmx512m"), log)
                    .awaitReady(Duration.ofSeconds(60))) {
                String run = Long.toString(System.currentTimeMillis() % 100_000, 36);
                register(gateway, "warmup-" + run, 16, concurrency, new ConcurrentHashMap<>());
                Map<String, String> passwords = new ConcurrentHashMap<>();
                System.out.println(register(gateway, "bench-" + run, devices, concurrency, passwords));
                System.out.printf(Locale.ROOT, "{\"scenario\":\"password-hash\",\"iterations\":%s,"
                        + "\"p50_ms\":%.1f,\"p99_ms\":%.1f}%n",
                        config.getOrDefault("gateway.registry.password-hash-iterations", "210000"),
                        1000 * gateway.metric("gateway_registry_password_hash_seconds{quantile=\"0.5\"}"),
                        1000 * gateway.metric("gateway_registry_password_hash_seconds{quantile=\"0.99\"}"));
                List<String> ids = new ArrayList<>(passwords.keySet());
                ExecutorService httpThreads = Executors.newFixedThreadPool(4, r -> {
                    Thread t = new Thread(r, "registry-bench-http");
                    t.setDaemon(true); // the JVM exits when main returns
                    return t;
                });
                HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10))
                        .executor(httpThreads).build();
                // cold: every device once (the slow hash), then cached under load
                System.out.println(hook(gateway, http, "hook-auth-cold", ids.size(), concurrency,
                        i -> authBody(ids.get(i), passwords.get(ids.get(i))), "/mqtt/auth", "allow"));
                System.out.println(hook(gateway, http, "hook-auth-cached", hookCalls, hookConcurrency,
                        i -> authBody(ids.get(i % ids.size()), passwords.get(ids.get(i % ids.size()))),
                        "/mqtt/auth", "allow"));
                System.out.println(hook(gateway, http, "hook-acl", hookCalls, hookConcurrency,
                        i -> "{\"clientid\":\"c\",\"username\":\"" + ids.get(i % ids.size()) + "\",\"topic\":\"devices/"
                                + ids.get(i % ids.size()) + "/telemetry/t\",\"action\":\"publish\"}",
                        "/mqtt/acl", "allow"));
                httpThreads.shutdownNow();
            }
        }
    }

    static String authBody(String id, String password) {
        return "{\"clientid\":\"c-" + id + "\",\"username\":\"" + id + "\",\"password\":\"" + password + "\"}";
    }

    static String register(GatewayProcess gateway, String prefix, int count, int concurrency,
            Map<String, String> passwords) throws Exception {
        ManagedChannel channel = Agents.channel(gateway.httpPort);
        Stats latency = new Stats();
        AtomicInteger next = new AtomicInteger();
        AtomicLong errors = new AtomicLong();
        ExecutorService pool = Executors.newFixedThreadPool(concurrency);
        long start = System.nanoTime();
        try {
            for (int t = 0; t < concurrency; t++) {
                pool.execute(() -> {
                    int i;
                    while ((i = next.getAndIncrement()) < count) {
                        String id = prefix + "-" + i;
                        long t0 = System.nanoTime();
                        try {
                            // a stub per call: its deadline (30 s) counts from when it is made
                            var stub = Agents.registry(channel, Agents.OPS_TOKEN);
                            passwords.put(id, stub.registerDevice(RegisterDeviceRequest.newBuilder().setDeviceId(id)
                                    .putLabels("bench", prefix).build()).getPassword());
                            latency.add(System.nanoTime() - t0);
                        } catch (RuntimeException e) {
                            if (errors.incrementAndGet() == 1) {
                                System.err.println("registry-bench: first RegisterDevice error: " + e);
                            }
                        }
                    }
                });
            }
            pool.shutdown();
            pool.awaitTermination(10, TimeUnit.MINUTES);
        } finally {
            channel.shutdownNow();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        return String.format(Locale.ROOT, "{\"scenario\":\"register%s\",\"devices\":%d,\"concurrency\":%d,"
                + "\"errors\":%d,\"seconds\":%.2f,\"rate_per_s\":%.1f,\"latency_ms\":%s}",
                prefix.startsWith("warmup") ? "-warmup" : "", latency.count(), concurrency, errors.get(), seconds,
                latency.count() / seconds, latency.json());
    }

    interface Body {
        String of(int i);
    }

    static String hook(GatewayProcess gateway, HttpClient http, String name, int calls, int concurrency, Body body,
            String path, String expect) throws Exception {
        URI uri = URI.create("http://127.0.0.1:" + gateway.httpPort + path);
        Stats latency = new Stats();
        AtomicInteger next = new AtomicInteger();
        AtomicLong unexpected = new AtomicLong();
        ExecutorService pool = Executors.newFixedThreadPool(concurrency);
        long start = System.nanoTime();
        for (int t = 0; t < concurrency; t++) {
            pool.execute(() -> {
                int i;
                while ((i = next.getAndIncrement()) < calls) {
                    HttpRequest request = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(30))
                            .header("authorization", "Bearer " + SECRET).header("content-type", "application/json")
                            .POST(HttpRequest.BodyPublishers.ofString(body.of(i))).build();
                    long t0 = System.nanoTime();
                    try {
                        HttpResponse<String> r = http.send(request, HttpResponse.BodyHandlers.ofString());
                        latency.add(System.nanoTime() - t0);
                        if (r.statusCode() != 200 || !r.body().contains("\"" + expect + "\"")) {
                            if (unexpected.incrementAndGet() == 1) {
                                System.err.println("registry-bench: " + name + ": first unexpected answer "
                                        + r.statusCode() + " " + r.body());
                            }
                        }
                    } catch (Exception e) {
                        unexpected.incrementAndGet();
                    }
                }
            });
        }
        pool.shutdown();
        pool.awaitTermination(10, TimeUnit.MINUTES);
        double seconds = (System.nanoTime() - start) / 1e9;
        return String.format(Locale.ROOT, "{\"scenario\":\"%s\",\"calls\":%d,\"concurrency\":%d,\"unexpected\":%d,"
                + "\"seconds\":%.2f,\"rate_per_s\":%.0f,\"latency_ms\":%s}", name, latency.count(), concurrency,
                unexpected.get(), seconds, latency.count() / seconds, latency.json());
    }
}
